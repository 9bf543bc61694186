"""Pure rules of the national-portal sync: map DongBoHoSoMC records to dossier events.

A one-stop system already pushes each dossier to the national public-service portal as a
DongBoHoSoMC record, and pushes it again whenever the dossier changes. Each record maps to a
`dossier.received` event, plus `dossier.digitized` and `dossier.paid` when the record says so.
Event ids are derived from `MaHoSo` and the event type only, so a record sent again after an
update yields the same ids and scoring counts it once.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from dvcpulse_common.registry import Registry
from dvcpulse_shared.api import FieldError

SOURCE = "dongbo"

# KenhThucHien: 1 (or absent) = at the counter, 2 = online, 3 = public postal service (BCCI).
CHANNELS = {"1": "direct", "": "direct", "2": "online", "3": "postal"}
# DuocThanhToanTrucTuyen: 1 = paid through the national payment platform, 2 = through the
# province's own online payment; anything else is not an online payment.
PAID_ONLINE = {"1", "2"}

# Our event fields -> the DongBoHoSoMC field a validation error should name.
SOURCE_FIELD = {
    "dossier_id": "MaHoSo",
    "unit_code": "DonViXuLy",
    "occurred_at": "NgayTiepNhan",
    "channel": "KenhThucHien",
    "fee_required": "DanhSachLePhi",
    "procedure_code": "MaTTHC",
    "amount_vnd": "DanhSachLePhi",
    "event_id": "MaHoSo",
}

_STAMP = re.compile(r"^\d{14}$")


class MappingFileError(ValueError):
    """The unit mapping file is unusable (raised at start-up, never per request)."""


def fold(text: str) -> str:
    """Key for portal unit codes and names: NFC, case-folded, inner whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def load_unit_mapping(path: Path, registry: Registry) -> dict[str, str]:
    """Portal unit code or name -> our unit code, from YAML (`{key: unit}` or `{units: {...}}`)
    or CSV (columns `portal` and `unit_code`). Targets may be codes or unique names; every one
    must resolve, so a typo fails at start-up instead of rejecting records later."""
    pairs: list[tuple[str, str, str]] = []  # (key, target, where)
    if path.suffix.lower() in {".yaml", ".yml"}:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if isinstance(data, dict) and isinstance(data.get("units"), dict):
            data = data["units"]
        if not isinstance(data, dict):
            raise MappingFileError(f"{path}: expected a mapping of portal unit -> unit code")
        pairs = [(str(k), str(v), f"{path.name}: key {k!r}") for k, v in data.items()]
    else:
        with path.open(encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            missing = {"portal", "unit_code"} - set(reader.fieldnames or [])
            if missing:
                raise MappingFileError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
            for line, row in enumerate(reader, start=2):
                pairs.append(
                    ((row["portal"] or ""), (row["unit_code"] or ""), f"{path.name}:{line}")
                )
    out: dict[str, str] = {}
    for key, target, where in pairs:
        if not key.strip():
            raise MappingFileError(f"{where}: empty portal unit")
        unit = registry.resolve(target)
        if unit is None:
            raise MappingFileError(f"{where}: {target!r} is not a unit code or unique unit name")
        if fold(key) in out and out[fold(key)] != unit.code:
            raise MappingFileError(f"{where}: {key!r} is mapped twice to different units")
        out[fold(key)] = unit.code
    return out


@dataclass
class MappedRecords:
    """Events to validate, the record each came from, and records rejected while mapping."""

    events: list[dict[str, Any]] = field(default_factory=list)
    origin: list[int] = field(default_factory=list)  # record index of each event
    rejected: dict[int, list[FieldError]] = field(default_factory=dict)
    dossier_ids: dict[int, str] = field(default_factory=dict)


class _Bad(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


def _code(value: Any, name: str) -> str:
    """Portal enums arrive as 2, "2" or "02"; empty/None is ''."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _Bad(name, f"must be a number or a numeric string, got {type(value).__name__}")
    text = str(value).strip()
    return str(int(text)) if text.isascii() and text.isdigit() else text  # not "²"


def _flag(value: Any, name: str) -> bool:
    code = _code(value, name) if not isinstance(value, bool) else str(int(value))
    if code in {"", "0"}:
        return False
    if code == "1":
        return True
    raise _Bad(name, f"must be 0 or 1, got {value!r}")


def _amount(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise _Bad(name, "a fee needs a numeric Gia (VND)")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise _Bad(name, f"must be a number of VND, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise _Bad(name, f"must be a number of VND >= 0, got {value!r}")
    return amount


def _received_at(value: Any, tz: ZoneInfo) -> datetime:
    text = value.strip() if isinstance(value, str) else value
    if not isinstance(text, str) or not _STAMP.match(text):
        raise _Bad("NgayTiepNhan", f"must be yyyyMMddHHmmss (local time), got {value!r}")
    try:
        naive = datetime.strptime(text, "%Y%m%d%H%M%S")
    except ValueError:
        raise _Bad("NgayTiepNhan", f"is not a real date and time: {value!r}") from None
    return naive.replace(tzinfo=tz)


def resolve_unit(record: Mapping[str, Any], registry: Registry, unit_map: Mapping[str, str]) -> str:
    raw = record.get("DonViXuLy")
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise _Bad("DonViXuLy", "is required: the unit that handles the dossier")
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise _Bad("DonViXuLy", f"must be a string, got {type(raw).__name__}")
    key = str(raw)
    mapped = unit_map.get(fold(key))
    if mapped is not None:
        return mapped
    unit = registry.resolve(key)
    if unit is not None:
        return unit.code
    same_name = [u.code for u in registry.units.values() if fold(u.name) == fold(key)]
    if len(same_name) > 1:
        raise _Bad(
            "DonViXuLy",
            f"{key!r} names {len(same_name)} units ({', '.join(sorted(same_name))}); "
            "send the unit code or map it in the sync unit mapping file",
        )
    raise _Bad(
        "DonViXuLy", f"unknown unit {key!r}: not a unit code, a unit name or a mapped portal unit"
    )


def map_record(
    record: Any, registry: Registry, unit_map: Mapping[str, str], tz: ZoneInfo
) -> tuple[list[dict[str, Any]], list[FieldError], str | None]:
    """One record -> its events, or the errors (every field at fault, not just the first)."""
    if not isinstance(record, dict):
        return [], [FieldError(field="", message="a record must be a JSON object")], None
    errors: list[FieldError] = []

    def attempt(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except _Bad as exc:
            errors.append(FieldError(field=exc.field, message=exc.message))
            return None

    raw_id = record.get("MaHoSo")
    dossier: str | None = None
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        dossier = str(raw_id)
    elif isinstance(raw_id, str) and raw_id.strip():
        dossier = raw_id.strip()
    else:
        errors.append(FieldError(field="MaHoSo", message="is required: the dossier code"))

    unit = attempt(resolve_unit, record, registry, unit_map)
    at = attempt(_received_at, record.get("NgayTiepNhan"), tz)
    channel_code = attempt(_code, record.get("KenhThucHien"), "KenhThucHien")
    channel = None
    if channel_code is not None:
        channel = CHANNELS.get(channel_code)
        if channel is None:
            errors.append(
                FieldError(
                    field="KenhThucHien",
                    message=f"must be 1 (direct), 2 (online) or 3 (postal), got {channel_code!r}",
                )
            )

    digitized = bool(attempt(_flag, record.get("HoSoCoThanhPhanSoHoa"), "HoSoCoThanhPhanSoHoa"))
    docs = record.get("TaiLieuNop")
    if docs is not None and not isinstance(docs, list):
        errors.append(FieldError(field="TaiLieuNop", message="must be a list of documents"))
    for i, doc in enumerate(docs if isinstance(docs, list) else []):
        if not isinstance(doc, dict):
            errors.append(FieldError(field=f"TaiLieuNop[{i}]", message="must be an object"))
            continue
        if attempt(_flag, doc.get("DuocSoHoa"), f"TaiLieuNop[{i}].DuocSoHoa"):
            digitized = True

    fees = record.get("DanhSachLePhi")
    total = Decimal(0)
    if fees is not None and not isinstance(fees, list):
        errors.append(FieldError(field="DanhSachLePhi", message="must be a list of fees"))
    for i, fee in enumerate(fees if isinstance(fees, list) else []):
        if not isinstance(fee, dict):
            errors.append(FieldError(field=f"DanhSachLePhi[{i}]", message="must be an object"))
            continue
        amount = attempt(_amount, fee.get("Gia"), f"DanhSachLePhi[{i}].Gia")
        if amount is not None:
            total += amount
    # A fee list where every Gia is 0 means the dossier is exempt: not fee-bearing.
    fee_required = total > 0

    paid_code = attempt(_code, record.get("DuocThanhToanTrucTuyen"), "DuocThanhToanTrucTuyen")
    procedure = record.get("MaTTHC")
    if procedure is not None and not isinstance(procedure, str):
        errors.append(FieldError(field="MaTTHC", message="must be a string"))

    if errors:
        return [], errors, dossier
    assert dossier is not None and at is not None and unit is not None and channel is not None
    base = {"dossier_id": dossier, "unit_code": unit, "occurred_at": at.isoformat()}
    received: dict[str, Any] = {
        "event_id": f"{SOURCE}:{dossier}:received",
        "type": "dossier.received",
        **base,
        "channel": channel,
        "fee_required": fee_required,
    }
    if isinstance(procedure, str) and procedure.strip():
        received["procedure_code"] = procedure.strip()
    events = [received]
    if digitized:
        events.append(
            {"event_id": f"{SOURCE}:{dossier}:digitized", "type": "dossier.digitized", **base}
        )
    # Only online payments become events: an offline "paid" under the same id would make the
    # later update that reports the online payment a duplicate, and it would never count.
    if fee_required and paid_code in PAID_ONLINE:
        paid: dict[str, Any] = {
            "event_id": f"{SOURCE}:{dossier}:paid",
            "type": "dossier.paid",
            **base,
            "payment_method": "online",
        }
        if total == total.to_integral_value():
            paid["amount_vnd"] = int(total)
        events.append(paid)
    return events, [], dossier


def map_records(
    records: list[Any], registry: Registry, unit_map: Mapping[str, str], tz: ZoneInfo
) -> MappedRecords:
    out = MappedRecords()
    for index, record in enumerate(records):
        events, errors, dossier = map_record(record, registry, unit_map, tz)
        if dossier is not None:
            out.dossier_ids[index] = dossier
        if errors:
            out.rejected[index] = errors
            continue
        out.events.extend(events)
        out.origin.extend([index] * len(events))
    return out


def source_field(event_field: str) -> str:
    """Name a validation error by the DongBoHoSoMC field the client sent."""
    head = event_field.split(".", 1)[0]
    return SOURCE_FIELD.get(head, event_field)


def split_records(body: bytes, max_records: int) -> list[Any]:
    """The body as records: a JSON array, `{"data": [...]}` (as the portal's API wraps them) or
    one record object. Raises BodyError (400) or TooLarge (413)."""
    import orjson

    from .domain import BodyError, TooLarge

    if not body.strip():
        raise BodyError("the body is empty: send a JSON array of DongBoHoSoMC records")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyError(f"the body is not valid JSON: {exc}") from exc
    if isinstance(data, dict):
        if "data" in data:
            data = data["data"]
            if not isinstance(data, list):
                raise BodyError("'data' must be a JSON array of DongBoHoSoMC records")
        elif "MaHoSo" in data:
            data = [data]
        else:
            raise BodyError(
                'the body must be a JSON array of records, {"data": [...]} or one record'
            )
    if not isinstance(data, list):
        raise BodyError("the body must be a JSON array of DongBoHoSoMC records")
    if len(data) > max_records:
        raise TooLarge(f"too many records in one request: the limit is {max_records}")
    return data
