"""Avro codec for every salepulse record: single-object encoding by default, Confluent wire format with a registry.

Writers pick one framing; readers accept both, so producers can move to a schema registry without a flag day:

- **Single-object encoding** (Avro specification): ``C3 01``, the 8-byte little-endian CRC-64-AVRO fingerprint of the
  writer schema's parsing canonical form, then the binary body. It needs no server: any reader holding the ``.avsc``
  files resolves the fingerprint.
- **Confluent wire format**: ``00``, a 4-byte big-endian schema id, then the binary body. Used when
  ``SCHEMA_REGISTRY_URL`` is set; schemas are registered under their full record name (RecordNameStrategy), so one
  topic can carry several record types.

Anything else raises :class:`DecodeError` with a reason a person can act on; the agents route those bytes to
``events.deadletter``. This module imports neither Kafka nor Faust (the registry client is confluent-kafka's HTTP
client, imported only when a registry is configured).

>>> codec = Codec()
>>> data = codec.encode("BrowseEvent", {"event_id": "e1", "member_id": "m1", "sale_id": "s1", "sku": "k1",
...                                     "ts": 1_700_000_000_000})
>>> data[:2].hex()
'c301'
>>> name, record = codec.decode(data)
>>> name, record["sku"], record["channel"]
('BrowseEvent', 'k1', 'web')
>>> try:
...     codec.decode(b"not avro")
... except DecodeError as error:
...     print(error)
unknown framing: first bytes 6e6f are neither Avro single-object (c301) nor Confluent (00)
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, parse_schema, to_parsing_canonical_form

from salepulse.schemas.avro_reader import Defer, Reader, compile_reader
from salepulse.schemas.avro_writer import Unsupported, compile_writer

SCHEMA_DIR = Path(__file__).parent / "avro"
SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0
NAMESPACE = "io.salepulse"


class DecodeError(ValueError):
    """Bytes that cannot be turned into a known record; the message says why."""


@dataclass(frozen=True)
class RecordType:
    """One Avro contract, parsed once."""

    name: str
    full_name: str
    raw: dict[str, Any]
    parsed: dict[str, Any]
    canonical: str
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO, as it appears on the wire
    parsed_ms: dict[str, Any]  # the same schema without logical types: timestamps read as epoch-ms ints


def without_logical_types(schema: Any) -> Any:
    """``schema`` with every ``logicalType`` dropped: the same binary encoding, read as the plain type.

    >>> without_logical_types({"type": "long", "logicalType": "timestamp-millis"})
    {'type': 'long'}
    """
    if isinstance(schema, dict):
        return {k: without_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [without_logical_types(v) for v in schema]
    return schema


def load_record_types(schema_dir: Path = SCHEMA_DIR) -> dict[str, RecordType]:
    """Every ``.avsc`` in ``schema_dir``, keyed by short record name (``BrowseEvent``)."""
    types: dict[str, RecordType] = {}
    for path in sorted(schema_dir.glob("*.avsc")):
        rtype = _record_type(path)
        types[rtype.name] = rtype
    return types


def _record_type(path: Path) -> RecordType:
    raw = json.loads(path.read_text())
    # Each file is self-contained, so each gets its own named-type namespace.
    parsed = parse_schema(raw, named_schemas={})
    canonical = to_parsing_canonical_form(parsed)
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    full_name = f"{raw.get('namespace', NAMESPACE)}.{raw['name']}"
    parsed_ms = parse_schema(without_logical_types(raw), named_schemas={})
    return RecordType(raw["name"], full_name, raw, parsed, canonical, fp, parsed_ms)


class Codec:
    """Encode and decode salepulse records.

    ``registry_url`` selects the Confluent wire format for writing; ``mock://…`` gives confluent-kafka's in-process
    mock registry (for tests). Decoding accepts both framings whatever the writer setting. ``compiled_reader=False``
    reads every body with fastavro (the benchmarks' before/after in one process).
    """

    def __init__(self, registry_url: str | None = None, schema_dir: Path = SCHEMA_DIR,
                 compiled_reader: bool = True) -> None:
        self.types = load_record_types(schema_dir)
        self.registry_url = registry_url
        self._by_fingerprint = {t.fingerprint: t for t in self.types.values()}
        self._by_full_name = {t.full_name: t for t in self.types.values()}
        # Earlier versions of a contract (schema_dir/history/*.avsc): bytes a producer wrote before a field was
        # added still decode on the single-object path, resolved to the current contract.
        self._older: dict[bytes, tuple[RecordType, RecordType]] = {}
        if (schema_dir / "history").is_dir():
            for path in sorted((schema_dir / "history").glob("*.avsc")):
                old = _record_type(path)
                if old.name in self.types:
                    self._older[old.fingerprint] = (self.types[old.name], old)
        self._registry_ids: dict[str, int] = {}
        # (framing head, compiled body writer) per record name; none with a registry (the id is looked up there)
        self._fast: dict[str, tuple[bytes, Callable[[Any], bytes]]] = {}
        if not registry_url:
            for rtype in self.types.values():
                writer = compile_writer(rtype.parsed)
                if writer is not None:
                    self._fast[rtype.name] = (SINGLE_OBJECT_MAGIC + rtype.fingerprint, writer)
        self._registry_writers: dict[int, tuple[RecordType, dict[str, Any], dict[str, Any]]] = {}
        # Compiled body reader per (writer, reader) schema object pair, None where fastavro reads; the schemas are
        # kept in the value so that their ids stay theirs.
        self.compiled_reader = compiled_reader
        self._readers: dict[tuple[int, int], tuple[Reader | None, dict[str, Any], dict[str, Any] | None]] = {}

    @cached_property
    def _registry(self) -> Any:
        from confluent_kafka.schema_registry import SchemaRegistryClient

        return SchemaRegistryClient.new_client({"url": self.registry_url})

    def record_type(self, name: str) -> RecordType:
        try:
            return self.types[name]
        except KeyError:
            raise KeyError(f"unknown record type {name!r}; known: {', '.join(sorted(self.types))}") from None

    def encode(self, name: str, record: Mapping[str, Any]) -> bytes:
        """Serialize ``record`` as record type ``name``; raises ``ValueError`` naming the bad field.

        Single-object framing takes the compiled writer (:mod:`salepulse.schemas.avro_writer`, the same bytes at
        half the cost) when it is sure of the record, else fastavro.
        """
        fast = self._fast.get(name)
        if fast is not None:
            try:
                return fast[0] + fast[1](record)
            except Unsupported:
                pass
        rtype = self.record_type(name)
        body = io.BytesIO()
        if self.registry_url:
            body.write(struct.pack(">bI", CONFLUENT_MAGIC, self._registry_id(rtype)))
        else:
            body.write(SINGLE_OBJECT_MAGIC)
            body.write(rtype.fingerprint)
        try:
            fastavro.schemaless_writer(body, rtype.parsed, record)
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:  # 2**63 for a long: overflow
            raise ValueError(f"{name} does not match its contract: {exc}") from exc
        return body.getvalue()

    def decode(self, data: bytes, timestamps: str = "datetime") -> tuple[str, dict[str, Any]]:
        """Return ``(record name, record)``; raises :class:`DecodeError` with the reason.

        ``timestamps="ms"`` leaves timestamp-millis fields as epoch-ms ints: the agents' hot path, where building a
        datetime only to turn it back into milliseconds cost more than the rest of the decode. Bodies are read by
        the compiled reader (:mod:`salepulse.schemas.avro_reader`, the same records at a fraction of the cost) when
        it is sure of them, else by fastavro.
        """
        as_ms = timestamps == "ms"
        if len(data) >= 10 and data[:2] == SINGLE_OBJECT_MAGIC:
            rtype = self._by_fingerprint.get(bytes(data[2:10]))
            if rtype is None and bytes(data[2:10]) in self._older:
                rtype, writer_type = self._older[bytes(data[2:10])]
                if as_ms:
                    return rtype.name, self._read(data, 10, writer_type.parsed_ms, rtype.parsed_ms, rtype.name)
                return rtype.name, self._read(data, 10, writer_type.parsed, rtype.parsed, rtype.name)
            if rtype is None:
                raise DecodeError(f"single-object fingerprint {bytes(data[2:10]).hex()} matches no known schema")
            schema = rtype.parsed_ms if as_ms else rtype.parsed
            return rtype.name, self._read(data, 10, schema, None, rtype.name)
        if len(data) >= 5 and data[0] == CONFLUENT_MAGIC:
            (schema_id,) = struct.unpack(">I", data[1:5])
            rtype, writer, writer_ms = self._registry_writer(schema_id)
            if as_ms:
                return rtype.name, self._read(data, 5, writer_ms, rtype.parsed_ms, rtype.name)
            return rtype.name, self._read(data, 5, writer, rtype.parsed, rtype.name)
        head = bytes(data[:2]).hex() or "(empty)"
        raise DecodeError(
            f"unknown framing: first bytes {head} are neither Avro single-object (c301) nor Confluent (00)"
        )

    def _read(self, data: bytes, start: int, writer: dict[str, Any], reader: dict[str, Any] | None,
              name: str) -> dict[str, Any]:
        entry = self._readers.get((id(writer), id(reader)))
        if entry is None:
            fast = compile_reader(writer, reader) if self.compiled_reader else None
            entry = self._readers[(id(writer), id(reader))] = (fast, writer, reader)
        if entry[0] is not None:
            if type(data) is not bytes:  # the compiled reader slices bytes; a memoryview slice has no .decode
                data = bytes(data)
            try:
                record, end = entry[0](data, start)
            except Defer:
                pass  # truncated, garbled or unusual: fastavro decodes it or says why
            else:
                if end != len(data):
                    raise DecodeError(f"{name} body has {len(data) - end} trailing bytes")
                return record
        buf = io.BytesIO(data)
        buf.seek(start)
        try:
            record = fastavro.schemaless_reader(buf, writer, reader)
        except Exception as exc:  # fastavro raises a zoo of types on truncated or garbled bodies
            raise DecodeError(f"{name} body does not decode: {type(exc).__name__}: {exc}") from exc
        if buf.tell() != len(data):
            raise DecodeError(f"{name} body has {len(data) - buf.tell()} trailing bytes")
        return record  # type: ignore[return-value]

    def _registry_id(self, rtype: RecordType) -> int:
        if rtype.name not in self._registry_ids:
            from confluent_kafka.schema_registry import Schema

            schema = Schema(json.dumps(rtype.raw), "AVRO")
            self._registry_ids[rtype.name] = self._registry.register_schema(rtype.full_name, schema)
        return self._registry_ids[rtype.name]

    def _registry_writer(self, schema_id: int) -> tuple[RecordType, dict[str, Any], dict[str, Any]]:
        if schema_id not in self._registry_writers:
            if not self.registry_url:
                raise DecodeError(f"Confluent-framed record (schema id {schema_id}) but SCHEMA_REGISTRY_URL is not set")
            try:
                raw = json.loads(self._registry.get_schema(schema_id).schema_str)
            except Exception as exc:
                raise DecodeError(f"schema id {schema_id} not found in the registry: {exc}") from exc
            full_name = f"{raw.get('namespace', NAMESPACE)}.{raw['name']}"
            rtype = self._by_full_name.get(full_name)
            if rtype is None:
                raise DecodeError(f"schema id {schema_id} is {full_name}, not a salepulse record")
            self._registry_writers[schema_id] = (rtype, parse_schema(raw, named_schemas={}),
                                                 parse_schema(without_logical_types(raw), named_schemas={}))
        return self._registry_writers[schema_id]
