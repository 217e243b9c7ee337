"""The Avro codec: single-object encoding by default, Confluent framing with a registry, both readable."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from salepulse.schemas.check import SAMPLES, check_all
from salepulse.schemas.codec import SINGLE_OBJECT_MAGIC, Codec, DecodeError


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_record_round_trips_in_single_object_encoding(name: str) -> None:
    codec = Codec()
    data = codec.encode(name, SAMPLES[name])
    assert data[:2] == SINGLE_OBJECT_MAGIC
    assert data[2:10] == codec.types[name].fingerprint
    decoded_name, record = codec.decode(data)
    assert decoded_name == name
    assert codec.encode(name, record) == data


def test_fingerprint_is_the_little_endian_crc64_avro_of_the_canonical_form() -> None:
    # Reference: the Avro specification's CRC-64-AVRO (Rabin) over the parsing canonical form.
    def crc64_avro(data: bytes) -> int:
        empty = 0xC15D213AA4D7A795
        table = []
        for i in range(256):
            fp = i
            for _ in range(8):
                fp = (fp >> 1) ^ (empty & -(fp & 1))
            table.append(fp)
        fp = empty
        for byte in data:
            fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
        return fp

    codec = Codec()
    for rtype in codec.types.values():
        assert rtype.fingerprint == struct.pack("<Q", crc64_avro(rtype.canonical.encode()))


def test_confluent_framing_with_a_registry_is_read_by_a_codec_without_one() -> None:
    writer = Codec("mock://salepulse-test")
    data = writer.encode("OrderEvent", SAMPLES["OrderEvent"])
    assert data[0] == 0
    schema_id = struct.unpack(">I", data[1:5])[0]
    name, record = writer.decode(data)
    assert (name, record["order_id"], record["lines"][0]["quantity"]) == ("OrderEvent", "o-1", 2)
    plain = Codec()
    with pytest.raises(DecodeError, match=rf"schema id {schema_id}\) but SCHEMA_REGISTRY_URL is not set"):
        plain.decode(data)
    single = plain.encode("OrderEvent", SAMPLES["OrderEvent"])
    assert writer.decode(single)[1]["order_id"] == "o-1"  # a registry codec still reads single-object bytes


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "unknown framing"),
        (b'{"type": "browse"}', "unknown framing"),
        (SINGLE_OBJECT_MAGIC + b"\x00" * 8 + b"\x02", "matches no known schema"),
    ],
)
def test_bytes_that_are_not_a_record_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        Codec().decode(data)


def test_truncated_and_padded_bodies_are_refused() -> None:
    codec = Codec()
    data = codec.encode("BrowseEvent", SAMPLES["BrowseEvent"])
    with pytest.raises(DecodeError, match="does not decode"):
        codec.decode(data[:-5])
    with pytest.raises(DecodeError, match="trailing bytes"):
        codec.decode(data + b"\x00")


def test_encoding_a_record_that_breaks_its_contract_names_the_problem() -> None:
    with pytest.raises(ValueError, match="CartEvent does not match its contract"):
        Codec().encode("CartEvent", {**SAMPLES["CartEvent"], "action": "steal"})
    with pytest.raises(KeyError, match="unknown record type 'Nope'"):
        Codec().encode("Nope", {})


def test_schemas_check_passes() -> None:
    report = check_all()
    assert report.ok, report.lines
    assert len(report.lines) == len(Codec().types)


def _old_expert_forecast_codec(tmp_path: Any, registry_url: str | None = None) -> Codec:
    """A producer still on the first ExpertForecast contract (no ``buyer_id``)."""
    from salepulse.schemas.codec import SCHEMA_DIR

    (tmp_path / "ExpertForecast.avsc").write_text((SCHEMA_DIR / "history" / "ExpertForecast.v1.avsc").read_text())
    return Codec(registry_url, schema_dir=tmp_path)


OLD_FORECAST = {k: v for k, v in SAMPLES["ExpertForecast"].items() if k != "buyer_id"}


def test_expert_forecasts_written_before_buyer_id_still_decode_single_object(tmp_path: Any) -> None:
    old = _old_expert_forecast_codec(tmp_path)
    data = old.encode("ExpertForecast", OLD_FORECAST)
    current = Codec()
    assert data[2:10] != current.types["ExpertForecast"].fingerprint  # really the old contract on the wire
    name, record = current.decode(data)
    assert (name, record["expected_units"], record["buyer_id"]) == ("ExpertForecast", 250.0, None)
    assert current.decode(data, timestamps="ms")[1]["submitted_at"] == OLD_FORECAST["submitted_at"]


def test_expert_forecasts_written_before_buyer_id_still_decode_through_the_registry(tmp_path: Any) -> None:
    old = _old_expert_forecast_codec(tmp_path, "mock://salepulse-old-forecasts")
    data = old.encode("ExpertForecast", OLD_FORECAST)
    assert data[0] == 0
    current = Codec("mock://salepulse-old-forecasts")
    current.__dict__["_registry"] = old._registry  # a mock registry lives in its client: share it like a server
    name, record = current.decode(data)
    assert (name, record["author"], record["buyer_id"]) == ("ExpertForecast", "buyer-anna", None)
    new = current.encode("ExpertForecast", SAMPLES["ExpertForecast"])
    assert new[1:5] != data[1:5]  # the new contract registered as a new version of the subject
    assert current.decode(new)[1]["buyer_id"] == "buyer-anna"
