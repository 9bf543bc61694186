"""Every `dvcpulse` command explains itself in --help (operators read this, not the code)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from dvcpulse_cli.main import _fmt_rate, app
from typer.testing import CliRunner


def all_commands() -> list[tuple[list[str], Any]]:
    root = typer.main.get_command(app)
    out: list[tuple[list[str], Any]] = []

    def walk(path: list[str], cmd: Any) -> None:
        out.append((path, cmd))
        if hasattr(cmd, "commands"):  # a group (typer may vendor its own click)
            for name, sub in cmd.commands.items():
                walk([*path, name], sub)

    walk([], root)
    return out


def test_the_commands_of_the_issue_exist() -> None:
    names = {" ".join(path) for path, _ in all_commands()}
    for name in ("serve", "up", "simulate", "units", "scores", "dlq list", "dlq replay", "docs"):
        assert name in names, name


@pytest.mark.parametrize(
    "path", [p for p, _ in all_commands()], ids=lambda p: " ".join(p) or "root"
)
def test_help_explains_the_command(path: list[str]) -> None:
    cmd = dict((tuple(p), c) for p, c in all_commands())[tuple(path)]
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert (cmd.help or "").strip(), f"`dvcpulse {' '.join(path)}` has no help text"
    first_line = cmd.help.strip().splitlines()[0]
    assert first_line[:40] in " ".join(result.output.split())
    # Every option and argument says what it is for.
    for param in cmd.params:
        if param.name in {"help", "install_completion", "show_completion"}:
            continue
        assert getattr(param, "help", None), (
            f"`dvcpulse {' '.join(path)}`: {param.name} has no help"
        )


def test_scores_table_prints_rates_as_the_plan_does() -> None:
    # 24,965 of 39,219 is 63.6553…%: the plan prints 63,65% (cut, not rounded to 63,66%).
    assert _fmt_rate({"online": 24_965, "received": 39_219}, "online") == "63,65%"
    assert _fmt_rate({"paid_online": 0, "fee_required": 0}, "online_payment") == "N/A"
    assert _fmt_rate({"paid_online": 0, "fee_required": 7}, "online_payment") == "0,00%"
