"""The shipped registry and targets, and the rules that pick a window's targets."""

from __future__ import annotations

import unicodedata
from datetime import date
from decimal import Decimal

import pytest
from dvcpulse_common.registry import Registry, RegistryError, load_registry
from dvcpulse_common.settings import DEFAULT_LEVEL_LABELS, Settings
from dvcpulse_common.targets import active_campaign, load_targets, set_in_force, unit_targets
from dvcpulse_scoring.domain import WindowError, resolve_window, windows_for_day
from dvcpulse_shared.units import Unit


@pytest.fixture(scope="module")
def registry() -> Registry:
    s = Settings()
    return load_registry(s.units_file, s.level_labels)


@pytest.fixture(scope="module")
def sets():
    return load_targets(Settings().targets_file)


def test_ca_mau_registry_shape(registry):
    levels = [u.level for u in registry.units.values()]
    assert len(registry.units) == 129
    assert (
        levels.count("root"),
        levels.count("province"),
        levels.count("district"),
        levels.count("commune"),
    ) == (1, 18, 9, 101)
    assert registry.root_code == "CMU"
    assert [lv.code for lv in registry.levels] == ["province", "district", "commune"]
    assert all(c.isascii() for c in registry.units)
    # Same name, two units, two codes.
    tan_thanh = [
        u.code
        for u in registry.units.values()
        if u.name.endswith("Tân Thành") and u.parent_code == "CMU-H01"
    ]
    assert sorted(tan_thanh) == ["CMU-H01-X07", "CMU-H01-X17"]
    assert len(registry.children["CMU-H01"]) == 17
    assert registry.units["CMU-S02"].has_fee_procedures is False


def test_resolve_by_name_in_nfc_or_nfd(registry):
    name = "UBND huyện Đầm Dơi"
    assert registry.resolve(unicodedata.normalize("NFD", name)).code == "CMU-H04"
    assert registry.resolve(unicodedata.normalize("NFC", name).upper()).code == "CMU-H04"
    assert registry.resolve("UBND phường Tân Thành").code == "CMU-H01-X07"
    assert registry.resolve("UBND xã Tân Thành").code == "CMU-H01-X17"


def test_an_ambiguous_name_resolves_to_nothing_rather_than_the_wrong_unit():
    units = [
        Unit(code="R", name="Tỉnh", level="root"),
        Unit(code="A", name="UBND xã Tân Thành", level="commune", parent_code="R"),
        Unit(code="B", name="UBND xã Tân Thành", level="commune", parent_code="R"),
    ]
    reg = Registry.build(units, {})
    assert reg.resolve("UBND xã Tân Thành") is None
    assert reg.resolve("A").code == "A"


def test_two_level_registry_works():
    units = [
        Unit(code="T", name="Tỉnh", level="root"),
        Unit(code="T-S1", name="Sở A", level="province", parent_code="T"),
        Unit(code="T-X1", name="Xã B", level="commune", parent_code="T"),
    ]
    reg = Registry.build(units, DEFAULT_LEVEL_LABELS)
    assert [lv.code for lv in reg.levels] == ["province", "commune"]


def test_registry_errors_name_the_problem():
    with pytest.raises(RegistryError, match="parent_code"):
        Registry.build([Unit(code="A", name="A", level="x", parent_code="B")], {})
    with pytest.raises(RegistryError, match="twice"):
        Registry.build(
            [Unit(code="A", name="A", level="x"), Unit(code="A", name="B", level="x")], {}
        )


def test_target_sets_from_the_plan(sets):
    by_id = {s.id: s for s in sets}
    c = by_id["campaign-2023"]
    assert (c.valid_from, c.valid_to) == (date(2023, 3, 1), date(2023, 5, 9))
    assert (c.valid_to - c.valid_from).days + 1 == 70  # 01/03..09/05 inclusive
    assert c.levels["district"].online == Decimal(70)
    assert c.levels["commune"].digitization == Decimal(65)
    assert by_id["annual-2023"].levels["province"].digitization == Decimal(70)
    assert by_id["annual-2022"].levels["commune"].online_payment == Decimal(10)


def test_campaign_beats_annual_plan_inside_its_dates(sets):
    assert set_in_force(sets, date(2023, 3, 15)).id == "campaign-2023"
    assert set_in_force(sets, date(2023, 6, 1)).id == "annual-2023"
    assert set_in_force(sets, date(2024, 1, 1)) is None
    assert active_campaign(sets, date(2026, 11, 28)).id == "campaign-2023"
    assert active_campaign(sets, date(2022, 1, 1)) is None


def test_unit_override(sets):
    c = next(s for s in sets if s.id == "campaign-2023")
    patched = c.model_copy(
        update={
            "units": {"CMU-S01": c.levels["province"].model_copy(update={"online": Decimal(95)})}
        }
    )
    assert unit_targets(patched, "CMU-S01", "province").online == Decimal(95)
    assert unit_targets(patched, "CMU-S02", "province").online == Decimal(80)


def test_windows_for_a_day(sets):
    ids = sorted(w.id for w, _ in windows_for_day(date(2023, 3, 2), sets))
    assert ids == ["annual-2023", "campaign-2023"]
    assert [w.id for w, _ in windows_for_day(date(2025, 1, 1), sets)] == ["year-2025"]


def test_resolve_window(sets):
    today = date(2026, 11, 28)
    w, t = resolve_window("campaign", None, None, sets, today)
    assert (w.date_from, w.date_to, t.id) == (date(2023, 3, 1), date(2023, 5, 9), "campaign-2023")
    w, t = resolve_window(None, date(2023, 3, 1), date(2023, 3, 31), sets, today)
    assert w.id == "custom" and t.id == "campaign-2023"
    w, t = resolve_window(None, None, None, sets, today)
    assert w.id == "all" and t is None
    with pytest.raises(WindowError) as err:
        resolve_window("nope", None, None, sets, today)
    assert err.value.field == "window"
    with pytest.raises(WindowError) as err:
        resolve_window(None, date(2023, 3, 2), date(2023, 3, 1), sets, today)
    assert err.value.field == "to"
