"""Build config/ca_mau/units.csv from the plan's appendix (../shared/data/ca_mau_units_2022.csv).

Codes are hierarchical and ASCII: CMU (the province), CMU-S01.. (departments, "sở"),
CMU-H01.. (districts, "huyện"), CMU-H01-X01.. (communes, numbered within their district in the
appendix order). Names repeat across and within districts, so only codes identify units.

Usage: uv run python scripts/build_ca_mau_registry.py [SOURCE_CSV] [OUT_CSV]
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

ROOT_CODE = "CMU"
ROOT_NAME = "UBND tỉnh Cà Mau"
PREFIX = {"province": "S", "district": "H"}


def build(source: Path, out: Path) -> int:
    rows = list(csv.DictReader(source.open(encoding="utf-8")))
    district_code_by_name: dict[str, str] = {}
    commune_counter: dict[str, int] = {}
    units = [
        {
            "code": ROOT_CODE,
            "name": ROOT_NAME,
            "level": "root",
            "parent_code": "",
            "has_fee_procedures": "yes",
            "baseline_online_rate": "",
            "baseline_digitization_rate": "",
            "baseline_online_payment_rate": "",
        }
    ]
    for row in rows:
        level = row["level"]
        stt = int(row["stt"])
        if level in PREFIX:
            code = f"{ROOT_CODE}-{PREFIX[level]}{stt:02d}"
            parent = ROOT_CODE
            if level == "district":
                district_code_by_name[row["name"]] = code
        else:
            parent = district_code_by_name[row["parent"]]
            commune_counter[parent] = commune_counter.get(parent, 0) + 1
            code = f"{parent}-X{commune_counter[parent]:02d}"
        units.append(
            {
                "code": code,
                "name": row["name"],
                "level": level,
                "parent_code": parent,
                "has_fee_procedures": row["has_fee_procedures"],
                "baseline_online_rate": row["online_rate_2022"],
                "baseline_digitization_rate": row["digitization_rate_2022"],
                "baseline_online_payment_rate": row["online_payment_rate_2022"],
            }
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(units[0]))
        writer.writeheader()
        writer.writerows(units)
    return len(units)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent.parent
    src = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else here.parent / "shared/data/ca_mau_units_2022.csv"
    )
    dst = Path(sys.argv[2]) if len(sys.argv) > 2 else here / "config/ca_mau/units.csv"
    print(f"{build(src, dst)} units written to {dst}")
