"""The compiled Avro reader (schemas/avro_reader.py) against fastavro, for every contract (Hypothesis).

Bodies are fastavro's bytes of records drawn from each schema (``values`` of the writer's test), read in both of
the codec's timestamp modes; then the same bodies truncated, with bytes flipped, inserted or cut, and bodies of
random bytes. Where the compiled reader answers, its record and end position must be fastavro's; where it is not
sure it defers, and the codec then gives fastavro's record or the same ``DecodeError`` as before.
"""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest
from fastavro.schema import parse_schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salepulse.schemas import avro_reader
from salepulse.schemas.avro_reader import Defer, compile_reader
from salepulse.schemas.codec import SCHEMA_DIR, SINGLE_OBJECT_MAGIC, Codec, DecodeError, without_logical_types
from tests.unit.test_avro_writer import values

CODEC = Codec()
SLOW = Codec(compiled_reader=False)
SAME = settings(max_examples=120, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
NAMES = sorted(CODEC.types)
HEADS = {name: SINGLE_OBJECT_MAGIC + rtype.fingerprint for name, rtype in CODEC.types.items()}
HISTORY = sorted(p.name for p in (SCHEMA_DIR / "history").glob("*.avsc"))


def fastavro_read(body: bytes, writer: Any, reader: Any = None) -> tuple[Any, int] | type[Exception]:
    buf = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(buf, writer, reader)
    except Exception as exc:  # noqa: BLE001 - compared by kind below
        return type(exc)
    return record, buf.tell()


def same(a: Any, b: Any) -> bool:
    """Equal, NaN included (a flipped byte in a double can make one)."""
    return a == b or repr(a) == repr(b)


def body_of(name: str, record: Any) -> bytes | None:
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, CODEC.record_type(name).parsed, record)
    except Exception:  # noqa: BLE001 - a record fastavro does not write gives no body to read
        return None
    return buf.getvalue()


@st.composite
def bodies(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(NAMES))
    body = body_of(name, draw(values(CODEC.record_type(name).parsed)))
    if body is None:
        body = b""
    return name, body


@st.composite
def garbled(draw: st.DrawFn) -> tuple[str, bytes]:
    name, body = draw(bodies())
    how = draw(st.sampled_from(["truncate", "flip", "insert", "cut", "random", "append"]))
    data = bytearray(body)
    if how == "random" or not data:
        return name, draw(st.binary(max_size=80))
    at = draw(st.integers(0, len(data) - 1))
    if how == "truncate":
        del data[at:]
    elif how == "flip":
        for _ in range(draw(st.integers(1, 3))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    elif how == "insert":
        data[at:at] = draw(st.binary(min_size=1, max_size=4))
    elif how == "cut":
        del data[at:at + draw(st.integers(1, 4))]
    else:
        data += draw(st.binary(min_size=1, max_size=4))
    return name, bytes(data)


def compiled(writer: Any, reader: Any = None, min_items: int = avro_reader.COLUMN_MIN_ITEMS) -> Any:
    """``compile_reader`` with numpy taking blocks of ``min_items`` longs or more (1: every block, which the
    drawn arrays of a few items would otherwise never reach)."""
    before, avro_reader.COLUMN_MIN_ITEMS = avro_reader.COLUMN_MIN_ITEMS, min_items
    try:
        return compile_reader(writer, reader)
    finally:
        avro_reader.COLUMN_MIN_ITEMS = before


def check_pair(body: bytes, writer: Any, reader: Any = None, must_read: bool = False) -> None:
    """The compiled reader of the pair reads ``body`` as fastavro does, or defers (not when ``must_read`` and
    fastavro reads it), with and without numpy on the columns of longs."""
    expected = fastavro_read(body, writer, reader)
    for min_items in (avro_reader.COLUMN_MIN_ITEMS, 1):
        read = compiled(writer, reader, min_items)
        if read is None:
            return
        try:
            got = read(body, 0)
        except Defer:
            assert not (must_read and isinstance(expected, tuple)), "deferred a body fastavro wrote and reads"
            continue
        assert isinstance(expected, tuple), f"fastavro raised {expected} where the compiled reader read {got}"
        assert same(got, expected)


@SAME
@given(bodies())
def test_the_compiled_reader_reads_fastavros_records(drawn: tuple[str, bytes]) -> None:
    name, body = drawn
    rtype = CODEC.record_type(name)
    if body:  # a timestamp past year 9999 as a datetime: fastavro raises, the compiled reader must defer
        check_pair(body, rtype.parsed, must_read=True)
        check_pair(body, rtype.parsed_ms, must_read=True)


@SAME
@given(garbled())
def test_garbled_bodies_read_as_fastavro_reads_them_or_defer(drawn: tuple[str, bytes]) -> None:
    name, body = drawn
    rtype = CODEC.record_type(name)
    check_pair(body, rtype.parsed)
    check_pair(body, rtype.parsed_ms)


@SAME
@given(garbled())
def test_the_codec_decodes_as_before_or_fails_with_the_same_reason(drawn: tuple[str, bytes]) -> None:
    name, body = drawn
    data = HEADS[name] + body
    for mode in ("ms", "datetime"):
        try:
            expected: Any = SLOW.decode(data, timestamps=mode)
        except DecodeError as exc:
            expected = str(exc)
        try:
            got: Any = CODEC.decode(data, timestamps=mode)
        except DecodeError as exc:
            got = str(exc)
        assert same(got, expected)


COLUMNS = parse_schema({"type": "record", "name": "C", "fields": [
    {"name": "longs", "type": {"type": "array", "items": "long"}},
    {"name": "ints", "type": {"type": "array", "items": "int"}}]}, named_schemas={})
EDGES = st.sampled_from([0, -1, 1, 63, -64, 64, 2**31 - 1, -(2**31), 2**62 - 1, -(2**62), 2**62, 2**63 - 1,
                         -(2**63), 1_795_946_400_000])


@SAME
@given(st.lists(st.integers(-(2**63), 2**63 - 1) | EDGES, max_size=60),
       st.lists(st.integers(-(2**31), 2**31 - 1) | EDGES.filter(lambda v: -(2**31) <= v < 2**31), max_size=60),
       st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3), st.integers(0, 2000))
def test_columns_of_longs_read_as_fastavro_reads_them(longs: list[int], ints: list[int],
                                                      flips: list[tuple[int, int]], cut: int) -> None:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, COLUMNS, {"longs": longs, "ints": ints})
    body = buf.getvalue()
    check_pair(body, COLUMNS, must_read=True)
    garbled = bytearray(body[:cut] if cut < len(body) else body)
    for at, byte in flips:
        if garbled:
            garbled[at % len(garbled)] = byte
    check_pair(bytes(garbled), COLUMNS)


def history_types() -> list[tuple[str, Any, Any]]:
    """(file, writer, reader) for every older contract resolved to the current one, both timestamp modes."""
    pairs = []
    for file in HISTORY:
        raw = json.loads((SCHEMA_DIR / "history" / file).read_text())
        current = CODEC.record_type(raw["name"])
        pairs.append((file, parse_schema(raw, named_schemas={}), current.parsed))
        pairs.append((file, parse_schema(without_logical_types(raw), named_schemas={}), current.parsed_ms))
    return pairs


@SAME
@given(st.data())
def test_older_contracts_resolve_as_fastavro_resolves_them(data: st.DataObject) -> None:
    file, writer, reader = data.draw(st.sampled_from(history_types()))
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, writer, data.draw(values(writer)))
    except Exception:  # noqa: BLE001
        return
    body = buf.getvalue()
    check_pair(body, writer, reader, must_read=True)
    cut = body[:data.draw(st.integers(0, len(body)))]
    check_pair(cut, writer, reader)


def test_the_hot_records_have_compiled_readers() -> None:
    """Not a property: the roles' records must take the compiled path, or it is dead code."""
    for name in ("BrowseEvent", "CartEvent", "OrderEvent", "VelocityFacts", "MemberSignals"):
        for schema in (CODEC.record_type(name).parsed, CODEC.record_type(name).parsed_ms):
            assert compile_reader(schema) is not None, name
    resolvable = [file for file, writer, reader in history_types() if compile_reader(writer, reader) is not None]
    assert "OrderEvent.v1.avsc" in resolvable and "VelocityFacts.v1.avsc" in resolvable


def test_trailing_bytes_are_refused_with_their_count() -> None:
    data = CODEC.encode("BrowseEvent", {"event_id": "e", "member_id": "m", "sale_id": "s", "sku": "k", "ts": 1})
    with pytest.raises(DecodeError, match="BrowseEvent body has 2 trailing bytes"):
        CODEC.decode(data + b"\x00\x00", timestamps="ms")


def test_a_memoryview_decodes_like_bytes() -> None:
    data = CODEC.encode("BrowseEvent", {"event_id": "e", "member_id": "m", "sale_id": "s", "sku": "k", "ts": 1})
    assert CODEC.decode(memoryview(data)) == SLOW.decode(data)
