"""Avro binary bodies read by closures compiled once per (writer, reader) schema pair: the twin of
:mod:`salepulse.schemas.avro_writer`.

Why not only fastavro: ``fastavro.schemaless_reader`` spends most of a small record's ~4 µs per call rather than
per byte (the schemas re-parsed, a decoder set up; ``Codec._read`` was 16.8 % of the velocity worker's samples).
The columnar facts batch's cost is per item instead: its doubles are one ``struct`` call, its enums a table
look-up, its longs and ints numpy's (blocks of :data:`COLUMN_MIN_ITEMS` or more), its strings fastavro's C loop
(one call per column: a Python loop per string was slower).

The subset is the writer's: string, int, long (timestamp-millis included), double, boolean, null, enum, unions of
null and one of those, arrays and records of them. Schema resolution is handled only where it is plain: the same
record name, reader fields that the writer has with the same type (docs aside) or that have a plain default
(``null``, a string, a number, a boolean, ``[]``), writer fields the reader lacks skipped. Any other schema pair
gets no compiled reader (:func:`compile_reader` answers ``None``). Any body it is not sure of (truncated, an index
or symbol out of range, a varint over 64 bits, an int over 32, a boolean byte other than 0 or 1, a negative length,
a string that is not UTF-8) raises :class:`Defer`, and the codec reads it with fastavro, which either decodes it or
raises the error the codec words as ``DecodeError``. Where it reads, its records are fastavro's
(``tests/unit/test_avro_reader.py`` compares them with Hypothesis, on random and on mutated bytes).

>>> from fastavro import parse_schema
>>> schema = parse_schema({"type": "record", "name": "E", "fields": [{"name": "id", "type": "string"},
...     {"name": "n", "type": "long"}, {"name": "tag", "type": ["null", "string"], "default": None}]})
>>> read = compile_reader(schema)
>>> read(bytes.fromhex("04c3a90500"), 0)
({'id': 'é', 'n': -3, 'tag': None}, 5)
>>> try:
...     read(bytes.fromhex("04c3a905"), 0)  # truncated: fastavro decides
... except Defer:
...     print("defer")
defer
"""

from __future__ import annotations

import copy
import struct
from collections.abc import Callable
from io import BytesIO
from typing import Any

import numpy as np
from fastavro import parse_schema, schemaless_reader
from fastavro.read import LOGICAL_READERS

Reader = Callable[[bytes, int], tuple[Any, int]]
INT_MIN, INT_MAX = -(2**31), 2**31 - 1
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1
_double = struct.Struct("<d").unpack_from
_PLAIN_DEFAULTS = (type(None), str, int, float, bool)


class Defer(ValueError):
    """This body is not one the compiled reader is sure of: read it with fastavro."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag long of more than one byte (callers take the one-byte case inline)."""
    shift = n = 0
    for i in range(pos, pos + 10):
        byte = data[i]
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            if n >= 1 << 64:  # a tenth byte over 1: fastavro's C reader would wrap it
                raise Defer
            return (n >> 1) ^ -(n & 1), i + 1
        shift += 7
    raise Defer


def _int_wide(data: bytes, pos: int) -> tuple[int, int]:
    value, pos = _varint(data, pos)
    if not INT_MIN <= value <= INT_MAX:  # fastavro's C reader would keep 64 bits: leave it to say
        raise Defer
    return value, pos


def _string_wide(data: bytes, pos: int) -> tuple[str, int]:
    """A string whose length takes more than one byte (64 bytes or more), or a garbled length."""
    size, pos = _varint(data, pos)
    if size < 0 or pos + size > len(data):
        raise Defer
    return data[pos:pos + size].decode(), pos + size


def _count(data: bytes, pos: int) -> tuple[int, int]:
    """An array block's item count; a negative one (a block with its byte size) is left to fastavro."""
    byte = data[pos]
    count, pos = ((byte >> 1) ^ -(byte & 1), pos + 1) if byte < 0x80 else _varint(data, pos)
    if count < 0 or count > len(data) - pos:  # every item takes a byte at least: a garbled count defers at once
        raise Defer
    return count, pos


COLUMN_MIN_ITEMS = 32
"""A block of this many plain longs or ints or more is decoded with numpy (the facts batch's ts, offsets, units)."""


def _varint_block(data: bytes, pos: int, count: int, low: int, high: int) -> tuple[list[int], int] | None:
    """``count`` zig-zag varints at ``pos`` at once: each ends at the first byte under 0x80; its 7-bit groups are
    shifted into place and summed per varint. None if one takes 10 bytes (a magnitude past 2**62, whose groups
    overflow 64 bits here): the caller reads that block item by item."""
    window = np.frombuffer(data, dtype=np.uint8, count=min(len(data) - pos, 10 * count), offset=pos)
    ends = np.flatnonzero(window < 0x80)[:count]
    if len(ends) < count:
        raise Defer
    starts = np.zeros(count, dtype=np.int64)
    starts[1:] = ends[:-1] + 1
    lengths = ends - starts + 1
    if lengths.max() > 9:
        return None
    size = int(ends[-1]) + 1
    shifts = ((np.arange(size) - np.repeat(starts, lengths)) * 7).astype(np.uint64)
    n = np.add.reduceat((window[:size] & 0x7F).astype(np.uint64) << shifts, starts)
    values = (n >> np.uint64(1)).astype(np.int64) ^ -(n & np.uint64(1)).astype(np.int64)
    if low > LONG_MIN and (values.min() < low or values.max() > high):
        raise Defer
    return values.tolist(), pos + size


def _varint_column(low: int, high: int, min_items: int) -> Callable[[bytes, int], tuple[list[int], int]]:
    """An array of longs (or ints, ``low``..``high``): blocks of ``min_items`` or more through numpy."""

    def read(data: bytes, pos: int) -> tuple[list[int], int]:
        out: list[int] = []
        count, pos = _count(data, pos)
        while count:
            block = _varint_block(data, pos, count, low, high) if count >= min_items else None
            if block is not None:
                out += block[0]
                pos = block[1]
            else:
                for _ in range(count):
                    value, pos = _varint_any(data, pos)
                    if not low <= value <= high:
                        raise Defer
                    out.append(value)
            count, pos = _count(data, pos)
        return out, pos

    return read


def _varint_any(data: bytes, pos: int) -> tuple[int, int]:
    byte = data[pos]
    return ((byte >> 1) ^ -(byte & 1), pos + 1) if byte < 0x80 else _varint(data, pos)


class _NoReader(Exception):
    """A type or a resolution this module does not read: the schema pair gets no compiled reader."""


class _Source:
    """The Python source of one reader function, built field by field; constants go into its namespace."""

    def __init__(self, timestamps: Callable[[int], Any] | None) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"Defer": Defer, "_varint": _varint, "_int_wide": _int_wide,
                                      "_string_wide": _string_wide, "_count": _count, "_double": _double,
                                      "_unpack": struct.unpack_from, "_copy": copy.copy, "_ts": timestamps}
        self.timestamps = timestamps
        self.counter = 0

    def var(self, prefix: str = "v") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value: Any) -> str:
        name = self.var("K")
        self.names[name] = value
        return name

    def add(self, indent: int, *lines: str) -> None:
        self.lines += ["    " * indent + line for line in lines]

    def value(self, schema: Any, target: str, indent: int) -> None:
        """Lines that read one value of ``schema`` at ``pos`` into ``target`` and move ``pos`` past it."""
        if isinstance(schema, list):
            return self.union(schema, target, indent)
        kind, logical = (schema, None) if isinstance(schema, str) else (schema.get("type"), schema.get("logicalType"))
        if logical is not None:
            if (kind, logical) != ("long", "timestamp-millis") or self.timestamps is None:
                raise _NoReader
            self.value("long", target, indent)
            return self.add(indent, f"{target} = _ts({target})")
        if isinstance(kind, dict | list):
            return self.value(kind, target, indent)
        if kind == "string":  # a one-byte even length (ids): inline; the rest in _string_wide
            return self.add(indent, "b = data[pos]", "if b & 0x81:", f"    {target}, pos = _string_wide(data, pos)",
                            "else:",
                            f"    pos += 1; end = pos + (b >> 1); {target} = data[pos:end].decode(); pos = end")
        if kind in ("long", "int"):
            wide = "_varint" if kind == "long" else "_int_wide"
            return self.add(indent, "b = data[pos]", f"if b < 0x80: {target} = (b >> 1) ^ -(b & 1); pos += 1",
                            f"else: {target}, pos = {wide}(data, pos)")
        if kind == "double":
            return self.add(indent, f"{target} = _double(data, pos)[0]; pos += 8")
        if kind == "boolean":
            return self.add(indent, "b = data[pos]", "if b > 1: raise Defer", f"{target} = b == 1; pos += 1")
        if kind == "null":
            return self.add(indent, f"{target} = None")
        if kind == "enum":
            table = self.const(_enum_table(schema["symbols"]))
            return self.add(indent, f"{target} = {table}[data[pos]]", f"if {target} is None: raise Defer",
                            "pos += 1")
        if kind == "array":
            return self.array(schema["items"], target, indent)
        if kind == "record":
            return self.record(schema["fields"], target, indent)
        raise _NoReader

    def _check(self, schema: Any) -> None:
        """Raise :class:`_NoReader` unless this module reads ``schema`` (whoever reads it in the end)."""
        probe = _Source(self.timestamps)
        probe.value(schema, "x", 0)

    def union(self, branches: list[Any], target: str, indent: int) -> None:
        if len(branches) != 2 or "null" not in branches:
            raise _NoReader
        null_at = branches.index("null")
        self.add(indent, "b = data[pos]; pos += 1", f"if b == {null_at << 1}: {target} = None",
                 f"elif b == {(1 - null_at) << 1}:")
        self.value(branches[1 - null_at], target, indent + 1)
        self.add(indent, "else: raise Defer")

    def array(self, items: Any, target: str, indent: int) -> None:
        kind = items if isinstance(items, str) else items.get("type") if isinstance(items, dict) else None
        if items in ("long", "int") or (isinstance(items, dict) and items.get("type") in ("long", "int")
                                       and "logicalType" not in items):
            low, high = (INT_MIN, INT_MAX) if kind == "int" else (LONG_MIN, LONG_MAX)
            column = self.const(_varint_column(low, high, COLUMN_MIN_ITEMS))
            return self.add(indent, f"{target}, pos = {column}(data, pos)")
        if kind in ("string", "long", "int") or isinstance(items, list):
            # Columns of scalars (the facts batch): fastavro's C loop is cheaper per item than Python's, and one
            # call per column leaves its per-call cost small. Its errors defer the whole record to it.
            self._check(items)
            native = self.const(_native({"type": "array", "items": items}))
            return self.add(indent, f"{target}, pos = {native}(data, pos)")
        self.add(indent, f"{target} = []", "count, pos = _count(data, pos)", "while count:")
        if kind == "double" and not (isinstance(items, dict) and "logicalType" in items):
            self.add(indent + 1, f"{target} += _unpack(f'<{{count}}d', data, pos); pos += 8 * count")
        elif kind == "enum":  # one byte per item while the index stays under 64
            table = self.const(_enum_table(items["symbols"]))
            block = self.var()
            self.add(indent + 1, f"{block} = [{table}[i] for i in data[pos:pos + count]]",
                     f"if None in {block}: raise Defer", f"{target} += {block}; pos += count")
        else:
            item = self.var()
            self.add(indent + 1, "for _ in range(count):")
            self.value(items, item, indent + 2)
            self.add(indent + 2, f"{target}.append({item})")
        self.add(indent + 1, "count, pos = _count(data, pos)")

    def record(self, fields: list[dict[str, Any]], target: str, indent: int,
               defaults: list[tuple[str, Any]] = (), skipped: frozenset[str] = frozenset()) -> None:
        """Fields in the writer's order (those in ``skipped`` read and dropped), then the reader's ``defaults``: the
        key order of fastavro's records."""
        kept = []
        for field in fields:
            var = self.var()
            self.value(field["type"], var, indent)
            if field["name"] not in skipped:
                kept.append(f"{field['name']!r}: {var}")
        kept += [f"{name!r}: _copy({self.const(default)})" for name, default in defaults]  # never the schema's list
        self.add(indent, f"{target} = {{{', '.join(kept)}}}")

    def function(self) -> Reader:
        body = "\n".join("        " + line for line in self.lines)
        source = (f"def read(data, pos):\n    try:\n{body}\n    except Defer:\n        raise\n"
                  "    except Exception as exc:  # past the end, bad UTF-8, a date out of range: fastavro words it\n"
                  "        raise Defer from exc\n    if pos > len(data):  # a string sliced short at the end\n"
                  "        raise Defer\n    return record, pos\n")
        exec(compile(source, "<avro_reader>", "exec"), self.names)  # noqa: S102 - our own generated source
        read: Reader = self.names["read"]
        read.source = source  # type: ignore[attr-defined]  # for a person reading a failure
        return read


def _native(schema: dict[str, Any]) -> Callable[[bytes, int], tuple[Any, int]]:
    """A reader of one value of ``schema`` by fastavro, at ``pos`` of the body."""
    parsed = parse_schema(schema, named_schemas={})
    reader = schemaless_reader

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        buf = BytesIO(data)
        buf.seek(pos)
        return reader(buf, parsed, None), buf.tell()

    return read


def _enum_table(symbols: list[str]) -> list[str | None]:
    """Byte → symbol for the one-byte zig-zag indexes (the first 64 symbols); None where the byte is not one."""
    table: list[str | None] = [None] * 256
    for i, symbol in enumerate(symbols[:64]):
        table[i << 1] = symbol
    return table


def _shape(schema: Any) -> Any:
    """``schema`` without docs and fastavro's bookkeeping: two fields of equal shape read alike."""
    if isinstance(schema, dict):
        return {k: _shape(v) for k, v in schema.items() if k != "doc" and not k.startswith("__")}
    if isinstance(schema, list):
        return [_shape(v) for v in schema]
    return schema


def _resolved(source: _Source, writer: dict[str, Any], reader: dict[str, Any]) -> None:
    if writer.get("type") != "record" or reader.get("type") != "record" or writer["name"] != reader["name"]:
        raise _NoReader
    wanted = {field["name"]: field for field in reader["fields"]}
    skipped = set()
    for field in writer["fields"]:
        target = wanted.pop(field["name"], None)
        if target is None:
            skipped.add(field["name"])
        elif _shape(target["type"]) != _shape(field["type"]):
            raise _NoReader  # a promotion or a changed type: fastavro's resolution
    defaults = []
    for name, field in wanted.items():
        default = field.get("default", _NoReader)
        plain = isinstance(default, _PLAIN_DEFAULTS) or default == []
        if not plain or (isinstance(field["type"], dict) and "logicalType" in field["type"]):
            raise _NoReader
        defaults.append((name, default))
    source.record(writer["fields"], "record", 0, defaults, frozenset(skipped))


def compile_reader(writer: dict[str, Any], reader: dict[str, Any] | None = None) -> Reader | None:
    """The body reader of the (fastavro-parsed) record schema ``writer``, resolved to ``reader`` when that is
    another schema, or ``None`` if the pair has a type or a resolution this module does not read. The reader takes
    ``(data, start)`` and returns ``(record, end)``; it raises :class:`Defer` for a body it is not sure of.

    Why generated source rather than a closure per field, as the writer has: a call per field and a tuple per
    value were most of a closure reader's time (measured on a browse event: 3.5 µs closures, 2.8 µs generated,
    4.1 µs fastavro, on the shared box). The source is one straight function per schema pair, compiled once.

    Timestamp-millis fields become what fastavro makes of them (UTC datetimes); read a schema without logical
    types (the codec's ``timestamps="ms"``) to keep epoch-ms ints.
    """
    if writer.get("type") != "record":
        return None
    source = _Source(LOGICAL_READERS["long-timestamp-millis"])
    try:
        if reader is None or reader == writer:
            source.record(writer["fields"], "record", 0)
        else:
            _resolved(source, writer, reader)
    except _NoReader:
        return None
    return source.function()
