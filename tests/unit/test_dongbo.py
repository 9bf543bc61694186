"""DongBoHoSoMC records -> dossier events (pure mapping rules)."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from dvcpulse_common.registry import Registry
from dvcpulse_ingest.domain import BodyError, TooLarge, validate_events
from dvcpulse_ingest.dongbo import (
    MappingFileError,
    load_unit_mapping,
    map_record,
    map_records,
    source_field,
    split_records,
)
from dvcpulse_shared.units import Unit

DATA = Path(__file__).resolve().parents[1] / "data"
TZ = ZoneInfo("Asia/Ho_Chi_Minh")


def records() -> list[dict]:
    return json.loads((DATA / "dongbo_records.json").read_text(encoding="utf-8"))


def one(record, registry, unit_map=None):
    events, errors, _ = map_record(record, registry, unit_map or {}, TZ)
    return events, {e.field: e.message for e in errors}


def test_sample_records_map_to_valid_events(registry):
    mapped = map_records(records(), registry, {"tân thành": "CMU-H01-X07"}, TZ)
    assert mapped.rejected == {}
    by_id = {e["event_id"]: e for e in mapped.events}
    first = "dongbo:000.00.16.H12-230302-0001"
    assert set(by_id) == {
        f"{first}:received",
        f"{first}:digitized",  # one TaiLieuNop has DuocSoHoa = "1"
        f"{first}:paid",
        "dongbo:000.00.16.H12-230302-0002:received",
        "dongbo:000.00.16.H12-230302-0003:received",
        "dongbo:000.00.16.H12-230302-0003:digitized",  # HoSoCoThanhPhanSoHoa = "1"
    }
    r1 = by_id[f"{first}:received"]
    assert r1 == {
        "event_id": f"{first}:received",
        "type": "dossier.received",
        "dossier_id": "000.00.16.H12-230302-0001",
        "unit_code": "CMU-S01",
        "occurred_at": "2023-03-02T08:30:00+07:00",
        "channel": "online",
        "fee_required": True,
        "procedure_code": "1.001612",
    }
    assert by_id[f"{first}:paid"]["payment_method"] == "online"
    assert by_id[f"{first}:paid"]["amount_vnd"] == 75000
    r2 = by_id["dongbo:000.00.16.H12-230302-0002:received"]
    # Empty KenhThucHien is a counter dossier; a fee list of zeros is exempt (not fee-bearing).
    assert (r2["channel"], r2["fee_required"], r2["unit_code"]) == ("direct", False, "CMU-S02")
    assert r2["occurred_at"] == "2023-03-02T23:45:00+07:00"  # local time, not UTC
    r3 = by_id["dongbo:000.00.16.H12-230302-0003:received"]
    assert (r3["channel"], r3["unit_code"]) == ("postal", "CMU-H01-X07")
    assert mapped.origin == [0, 0, 0, 1, 2, 2]
    checked = validate_events(mapped.events, frozenset(registry.units))
    assert checked.rejected == [] and len(checked.events) == 6


def test_update_of_a_record_gives_the_same_event_ids(registry):
    before = {**records()[1], "DuocThanhToanTrucTuyen": "0"}
    after = {
        **before,
        "TrangThaiHoSo": "4",
        "DanhSachLePhi": [{"Gia": 20000}],
        "DuocThanhToanTrucTuyen": "2",
        "TaiLieuNop": [{"DuocSoHoa": 1}],
    }
    ev_before, _ = one(before, registry)
    ev_after, _ = one(after, registry)
    ids_before = {e["event_id"] for e in ev_before}
    ids_after = {e["event_id"] for e in ev_after}
    assert ids_before < ids_after
    # No offline "paid" was emitted before, so the online payment reported later is not a
    # duplicate of it.
    assert [e["type"] for e in ev_before] == ["dossier.received"]
    assert sorted(e["type"] for e in ev_after) == [
        "dossier.digitized",
        "dossier.paid",
        "dossier.received",
    ]


@pytest.mark.parametrize(
    ("value", "paid"), [("1", True), (2, True), ("0", False), (None, False), ("3", False)]
)
def test_paid_online_codes(registry, value, paid):
    record = {**records()[0], "DuocThanhToanTrucTuyen": value}
    events, errors = one(record, registry)
    assert errors == {}
    assert any(e["type"] == "dossier.paid" for e in events) is paid


def test_paid_online_without_fee_is_not_a_payment(registry):
    record = {**records()[0], "DanhSachLePhi": [{"Gia": 0}, {"Gia": "0"}]}
    events, errors = one(record, registry)
    assert errors == {}
    assert [e["type"] for e in events] == ["dossier.received", "dossier.digitized"]
    assert events[0]["fee_required"] is False


def test_unit_by_code_name_nfd_and_mapping(registry):
    base = records()[1]
    nfd = unicodedata.normalize("NFD", "sở giáo dục và đào tạo")
    events, errors = one({**base, "DonViXuLy": nfd}, registry)
    assert errors == {} and events[0]["unit_code"] == "CMU-S02"
    events, _ = one({**base, "DonViXuLy": "000.00.16.H12"}, registry, {"000.00.16.h12": "CMU-S04"})
    assert events[0]["unit_code"] == "CMU-S04"
    _, errors = one({**base, "DonViXuLy": "Sở Không Có"}, registry)
    assert errors == {
        "DonViXuLy": "unknown unit 'Sở Không Có': not a unit code, a unit name or a mapped "
        "portal unit"
    }


def test_ambiguous_name_is_rejected_naming_the_units():
    reg = Registry.build(
        [
            Unit(code="A", name="Tỉnh", level="root"),
            Unit(code="A-1", name="UBND xã Tân Thành", level="commune", parent_code="A"),
            Unit(code="A-2", name="UBND Xã Tân Thành", level="commune", parent_code="A"),
        ],
        {},
    )
    record = {**records()[1], "DonViXuLy": "UBND xã Tân Thành"}
    _, errors = one(record, reg)
    assert "2 units (A-1, A-2)" in errors["DonViXuLy"]


def test_every_bad_field_is_named(registry):
    record = {
        "MaHoSo": "",
        "DonViXuLy": "CMU-S01",
        "NgayTiepNhan": "2023-03-02 08:30",
        "KenhThucHien": "9",
        "HoSoCoThanhPhanSoHoa": "có",
        "TaiLieuNop": [{"DuocSoHoa": "2"}, "x"],
        "DanhSachLePhi": [{"Gia": "abc"}, {"Gia": -5}, {}],
        "DuocThanhToanTrucTuyen": [1],
        "MaTTHC": 5,
    }
    events, errors = one(record, registry)
    assert events == []
    assert set(errors) == {
        "MaHoSo",
        "NgayTiepNhan",
        "KenhThucHien",
        "HoSoCoThanhPhanSoHoa",
        "TaiLieuNop[0].DuocSoHoa",
        "TaiLieuNop[1]",
        "DanhSachLePhi[0].Gia",
        "DanhSachLePhi[1].Gia",
        "DanhSachLePhi[2].Gia",
        "DuocThanhToanTrucTuyen",
        "MaTTHC",
    }
    assert "yyyyMMddHHmmss" in errors["NgayTiepNhan"]
    assert "2 (online)" in errors["KenhThucHien"]


def test_impossible_date_and_missing_unit(registry):
    _, errors = one({**records()[1], "NgayTiepNhan": "20230230120000"}, registry)
    assert errors == {"NgayTiepNhan": "is not a real date and time: '20230230120000'"}
    record = {k: v for k, v in records()[1].items() if k != "DonViXuLy"}
    _, errors = one(record, registry)
    assert errors == {"DonViXuLy": "is required: the unit that handles the dossier"}
    events, errors, dossier = map_record("nope", registry, {}, TZ)
    assert (events, dossier) == ([], None) and errors[0].message == "a record must be a JSON object"


def test_too_long_dossier_code_is_named_by_the_portal_field(registry):
    record = {**records()[1], "MaHoSo": "X" * 65}
    events, errors = one(record, registry)
    assert errors == {}
    checked = validate_events(events, frozenset(registry.units))
    fields = {source_field(e.field) for r in checked.rejected for e in r.errors}
    assert fields == {"MaHoSo"}


def test_split_records_shapes_and_limits():
    rec = {"MaHoSo": "1"}
    assert split_records(json.dumps([rec]).encode(), 10) == [rec]
    assert split_records(json.dumps({"data": [rec, rec]}).encode(), 10) == [rec, rec]
    assert split_records(json.dumps(rec).encode(), 10) == [rec]
    with pytest.raises(TooLarge):
        split_records(json.dumps([rec] * 3).encode(), 2)
    for bad in (b"", b"[{", b'{"other": 1}', b'{"data": {}}', b"42"):
        with pytest.raises(BodyError):
            split_records(bad, 10)


def test_unit_mapping_files(tmp_path, registry):
    yml = tmp_path / "map.yaml"
    yml.write_text(
        "units:\n  '000.00.16.H12': CMU-S01\n  'Phòng Tư pháp': Sở Tư pháp\n", encoding="utf-8"
    )
    assert load_unit_mapping(yml, registry) == {
        "000.00.16.h12": "CMU-S01",
        "phòng tư pháp": "CMU-S04",
    }
    csv_file = tmp_path / "map.csv"
    csv_file.write_text("portal,unit_code\nH12.1,CMU-H01\n", encoding="utf-8")
    assert load_unit_mapping(csv_file, registry) == {"h12.1": "CMU-H01"}
    bad = tmp_path / "bad.csv"
    bad.write_text("portal,unit_code\nH12.1,CMU-H01\nH12.2,NOPE\n", encoding="utf-8")
    with pytest.raises(MappingFileError, match=r"bad.csv:3: 'NOPE' is not a unit code"):
        load_unit_mapping(bad, registry)
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("code,unit\n", encoding="utf-8")
    with pytest.raises(MappingFileError, match="missing column"):
        load_unit_mapping(wrong, registry)


@pytest.mark.parametrize("value", ["²", "٣", "1²"])
def test_codes_with_non_ascii_digits_never_crash_the_mapping(registry, value):
    # str.isdigit() is true for "²", which int() refuses: found by the fuzz test (a 500).
    record = {**records()[0], "DuocThanhToanTrucTuyen": value}
    events, errors = one(record, registry)
    assert not any(e["type"] == "dossier.paid" for e in events)
    assert errors == {} or all(isinstance(m, str) for m in errors.values())
