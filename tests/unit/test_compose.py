"""docker-compose.yml without a Docker engine: valid against the Compose specification's JSON
schema (vendored in tests/data/compose_spec.json, from Debian's docker-compose 1.29.2 package,
compose/config/compose_spec.json), and consistent with the code: every DVCPULSE_* variable is a
Settings field and parses, ports and paths agree, no default secrets, health-gated start-up."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from dvcpulse_common.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
SCHEMA = REPO / "tests" / "data" / "compose_spec.json"
SECRETS = {"REDIS_PASSWORD": "r3dis-pw", "GRAFANA_ADMIN_PASSWORD": "gr4fana-pw"}
PORT_FIELD = {"ingest": "ingest_port", "scoring": "scoring_port", "alerts": "alerts_port"}

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:\?|:-|\?|-)([^}]*))?\}|\$\$")


class MissingVariable(ValueError):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable syntax: ${VAR}, ${VAR:-default}, ${VAR:?error}, $$ -> $."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name)
        if op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and (value is None or (op == ":-" and value == "")):
            return arg
        return value or ""

    return _VAR.sub(sub, text)


def load(env: dict[str, str] | None = None) -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE.read_text(encoding="utf-8"), env or SECRETS))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load()


def all_settings_fields() -> dict[str, set[str]]:
    fields = {"*": set(Settings.model_fields)}
    try:
        from dvcpulse_alerts.settings import AlertsSettings

        fields["alerts"] = set(AlertsSettings.model_fields)
    except ImportError:  # the alerts service is built in its own issue
        fields["alerts"] = set(Settings.model_fields)
    return fields


def test_valid_against_the_compose_specification(compose):
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    # and the schema does catch mistakes (an unknown key in a service)
    broken = json.loads(json.dumps(compose))
    broken["services"]["scoring"]["helthcheck"] = {}
    assert any(True for _ in validator.iter_errors(broken))


def test_secrets_are_required_never_defaulted():
    raw = COMPOSE.read_text(encoding="utf-8")
    for name in SECRETS:
        assert re.search(rf"\$\{{{name}:\?[^}}]+\}}", raw), f"{name} must use ${{{name}:?...}}"
        assert not re.search(rf"\$\{{{name}:-", raw), f"{name} has a default"
        with pytest.raises(MissingVariable, match=name):
            load({k: v for k, v in SECRETS.items() if k != name})
    compose = load()
    grafana = compose["services"]["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD"] == SECRETS["GRAFANA_ADMIN_PASSWORD"]
    assert SECRETS["REDIS_PASSWORD"] in compose["services"]["redis"]["command"]


def test_every_dvcpulse_variable_is_a_settings_field_and_parses(compose):
    fields = all_settings_fields()
    seen = 0
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        dv = {k: str(v) for k, v in env.items() if k.startswith("DVCPULSE_")}
        allowed = fields["alerts"] if name == "alerts" else fields["*"]
        for key in dv:
            field = key.removeprefix("DVCPULSE_").lower()
            assert field in allowed, f"{name}: {key} is not a Settings field"
            seen += 1
        if name == "alerts" and fields["alerts"] != fields["*"]:
            from dvcpulse_alerts.settings import AlertsSettings as cls
        else:
            cls = Settings
        # The values parse into the service's settings (types, patterns).
        parsed = cls(
            _env_file=None, **{k.removeprefix("DVCPULSE_").lower(): v for k, v in dv.items()}
        )
        if dv:
            assert str(parsed.data_dir) == "/data" and parsed.host == "0.0.0.0"
            assert parsed.redis_url.get_secret_value().startswith("redis://:r3dis-pw@redis:6379/")
    assert seen >= 20


def test_ports_healthchecks_and_commands_match_the_code(compose):
    defaults = Settings(_env_file=None)
    services = compose["services"]
    for name, field in PORT_FIELD.items():
        svc = services[name]
        port = getattr(defaults, field)
        assert svc["command"] == ["serve", name]
        assert int(svc["environment"][f"DVCPULSE_{field.upper()}"]) == port
        assert svc["ports"] == [f"{port}:{port}"]
        assert f"127.0.0.1:{port}/health" in " ".join(svc["healthcheck"]["test"])
    from dvcpulse_cli.main import Service

    assert {s.value for s in Service} == set(PORT_FIELD)
    # Grafana's data sources reach the services by their compose names and ports.
    ds = yaml.safe_load((REPO / "grafana/provisioning/datasources/dvcpulse.yaml").read_text())
    urls = {d["uid"]: d["url"] for d in ds["datasources"]}
    assert urls == {
        "dvcpulse-scoring": f"http://scoring:{defaults.scoring_port}",
        "dvcpulse-alerts": f"http://alerts:{defaults.alerts_port}",
    }
    assert services["alerts"]["environment"]["DVCPULSE_SMTP_HOST"] == "mailpit"


def test_health_gated_startup_and_named_volumes(compose):
    services = compose["services"]
    for name, svc in services.items():
        assert "healthcheck" in svc or name == "demo", f"{name} has no healthcheck"
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert cond == {"condition": "service_healthy"}, f"{name} -> {dep}"
            assert "healthcheck" in services[dep], f"{name} waits on {dep}, which has none"
    declared = set(compose["volumes"])
    used = {
        v.split(":")[0]
        for svc in services.values()
        for v in svc.get("volumes", [])
        if not v.startswith(".")
    }
    assert used == declared == {"redis-data", "scoring-data", "alerts-data", "grafana-data"}
    assert "scoring-data:/data" in services["scoring"]["volumes"]
    assert "--appendonly yes" in services["redis"]["command"]
    assert "--requirepass" in services["redis"]["command"]


def test_grafana_mounts_the_provisioning_and_the_generated_dashboards(compose):
    grafana = compose["services"]["grafana"]
    assert "yesoreyeram-infinity-datasource" in grafana["environment"]["GF_INSTALL_PLUGINS"]
    mounts = dict(v.rsplit(":", 2)[:2] for v in grafana["volumes"] if v.startswith("./"))
    assert mounts == {
        "./grafana/provisioning": "/etc/grafana/provisioning",
        "./grafana/dashboards": "/var/lib/grafana/dashboards/dvcpulse",
    }
    for local in mounts:
        assert (REPO / local).is_dir()
    provider = yaml.safe_load((REPO / "grafana/provisioning/dashboards/dvcpulse.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == mounts["./grafana/dashboards"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (REPO / "grafana/dashboards" / Path(home).name).is_file()


def test_dockerfile_is_multi_stage_and_installs_from_the_lock_file():
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert len(re.findall(r"(?m)^FROM ", text)) >= 2
    assert "uv sync --frozen --no-dev" in text and "COPY pyproject.toml uv.lock" in text
    assert "DVCPULSE_HOST=0.0.0.0" in text and 'ENTRYPOINT ["dvcpulse"]' in text
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    for needed in ("shared", "services", "cli", "config", "grafana", "uv.lock", "pyproject.toml"):
        assert needed not in ignored
        assert (REPO / needed).exists()
    for copied in re.findall(r"(?m)^COPY (?!--)(\S+) ", text):
        assert (REPO / copied).exists(), copied


def test_env_example_names_every_required_variable():
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    for name in SECRETS:
        assert re.search(rf"(?m)^{name}=$", text), f"{name} missing (or given a value)"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_config_accepts_the_file():
    env = {**os.environ, **SECRETS}
    ok = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        env=env,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert ok.returncode == 0, ok.stderr
    without = {k: v for k, v in env.items() if k != "REDIS_PASSWORD"}
    refused = subprocess.run(
        ["docker-compose", "-f", str(COMPOSE), "config", "-q"],
        env=without,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert refused.returncode != 0 and "REDIS_PASSWORD" in refused.stderr
