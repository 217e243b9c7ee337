"""The compiled Avro writer (schemas/avro_writer.py) against fastavro, for every contract (Hypothesis).

Records are drawn from each schema (every field of its type, optional ones absent or null, arrays empty or not),
then some values are swapped for odd ones (another type, an int out of range, an unknown symbol, a lone surrogate,
a field removed). The codec must give fastavro's bytes for every record fastavro writes, and fail where it fails.
"""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salepulse.schemas.avro_writer import Unsupported, compile_writer
from salepulse.schemas.codec import SINGLE_OBJECT_MAGIC, Codec

CODEC = Codec()
SAME = settings(max_examples=150, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
ODD = st.sampled_from([None, "x", "\ud800", 1, -1, 2**31, -(2**31) - 1, 2**63, 1.5, float("nan"), True, [], {},
                       "replay", "web"])


def values(schema: Any) -> st.SearchStrategy[Any]:
    """Values of an Avro schema (as fastavro parsed it)."""
    if isinstance(schema, list):
        return st.one_of(*(values(branch) for branch in schema))
    kind = schema if isinstance(schema, str) else schema["type"]
    if isinstance(kind, dict | list):
        return values(kind)
    simple = {"string": st.text(max_size=6), "int": st.integers(-(2**31), 2**31 - 1),
              "long": st.integers(-(2**63), 2**63 - 1), "double": st.floats(allow_nan=False),
              "float": st.floats(width=32, allow_nan=False), "boolean": st.booleans(), "null": st.none(),
              "bytes": st.binary(max_size=6)}
    if kind in simple:
        return simple[kind]
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(values(schema["items"]), max_size=3)
    if kind == "map":
        return st.dictionaries(st.text(max_size=3), values(schema["values"]), max_size=2)
    if kind == "record":
        required = {f["name"]: values(f["type"]) for f in schema["fields"] if "default" not in f}
        optional = {f["name"]: values(f["type"]) for f in schema["fields"] if "default" in f}
        return st.fixed_dictionaries(required, optional=optional)
    raise AssertionError(f"no strategy for {schema!r}")


def fastavro_bytes(name: str, record: Any) -> bytes | type[Exception]:
    rtype = CODEC.record_type(name)
    body = io.BytesIO()
    try:
        fastavro.schemaless_writer(body, rtype.parsed, record)
    except Exception as exc:  # noqa: BLE001 - compared by kind below
        return type(exc)
    return SINGLE_OBJECT_MAGIC + rtype.fingerprint + body.getvalue()


@st.composite
def records(draw: st.DrawFn) -> tuple[str, Any]:
    name = draw(st.sampled_from(sorted(CODEC.types)))
    record = draw(values(CODEC.record_type(name).parsed))
    for _ in range(draw(st.integers(0, 2))):
        target = record
        nested = [v for v in record.values() if isinstance(v, list) and v and isinstance(v[0], dict)]
        if nested and draw(st.booleans()):
            target = draw(st.sampled_from(nested[0]))
        if target:
            key = draw(st.sampled_from(sorted(target)))
            if draw(st.integers(0, 3)) == 0:
                del target[key]
            else:
                target[key] = draw(ODD)
    return name, record


@SAME
@given(records())
def test_the_codec_writes_fastavros_bytes_or_fails_where_it_fails(drawn: tuple[str, Any]) -> None:
    name, record = drawn
    expected = fastavro_bytes(name, record)
    if isinstance(expected, bytes):
        assert CODEC.encode(name, record) == expected
    else:
        with pytest.raises(ValueError):
            CODEC.encode(name, record)


@SAME
@given(records())
def test_the_compiled_writer_never_writes_other_bytes(drawn: tuple[str, Any]) -> None:
    name, record = drawn
    rtype = CODEC.record_type(name)
    write = compile_writer(rtype.parsed)
    if write is None:
        return
    try:
        body = write(record)
    except Unsupported:
        return
    assert SINGLE_OBJECT_MAGIC + rtype.fingerprint + body == fastavro_bytes(name, record)


def test_the_events_have_compiled_writers() -> None:
    """Not a property: the collector's records must take the compiled path, or it is dead code."""
    for name in ("BrowseEvent", "CartEvent", "OrderEvent"):
        assert compile_writer(CODEC.record_type(name).parsed) is not None
