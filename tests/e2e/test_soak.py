"""A bounded soak: a steady 1,000 events/s over HTTP into ingest and scoring processes.

No loss (final counts equal the oracle of what was accepted) and flat memory (resident set of
each service in the last third of the run within a margin of the middle third). The 2-minute
run is marked `soak` (left out of the default run); CI runs the 15-second version.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.helpers import ServiceProcess, free_port, services, wait_until
from tests.oracle import expected_counts, messy_feed

UNITS = ["CMU-S04", "CMU-S13", "CMU-H02", "CMU-H06-X03", "CMU-H09-X01"]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_soak(service_env: dict, tmp_path: Path, seconds: int, rate: int = 1_000) -> dict:
    pi, ps = free_port(), free_port()
    ingest = ServiceProcess(
        "ingest", {**service_env, "DVCPULSE_INGEST_PORT": str(pi)}, pi, tmp_path
    )
    scoring = ServiceProcess(
        "scoring", {**service_env, "DVCPULSE_SCORING_PORT": str(ps)}, ps, tmp_path
    )
    feed = messy_feed(UNITS, seconds * rate // 2 + 1000, seed=21)[: seconds * rate]
    per_tick = rate // 10  # one request every 100 ms
    samples: dict[str, list[float]] = {"ingest": [], "scoring": []}
    accepted: list[dict] = []
    with services(ingest, scoring), httpx.Client(timeout=10) as http:
        started = time.monotonic()
        for tick, i in enumerate(range(0, len(feed), per_tick)):
            chunk = feed[i : i + per_tick]
            resp = http.post(
                f"{ingest.url}/api/v1/events",
                content=b"\n".join(orjson.dumps(e) for e in chunk),
                headers={"content-type": "application/x-ndjson"},
            )
            assert resp.status_code == 202, resp.text
            assert resp.json()["accepted"] == len(chunk)
            accepted.extend(chunk)
            if tick % 10 == 0:
                samples["ingest"].append(rss_mib(ingest.proc.pid))
                samples["scoring"].append(rss_mib(scoring.proc.pid))
            # Keep the pace: the next request is due at tick+1 times 100 ms.
            delay = started + (tick + 1) * 0.1 - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elapsed = time.monotonic() - started
        expected = expected_counts(accepted)

        def counted() -> bool:
            rows = httpx.get(
                f"{scoring.url}/api/v1/scores", params={"unit": ",".join(UNITS)}, timeout=10
            ).json()["rows"]
            got = {
                r["unit_code"]: {
                    k: r[k]
                    for k in ("received", "online", "digitized", "fee_required", "paid_online")
                }
                for r in rows
            }
            return got == {u: expected[u] for u in UNITS}

        wait_until(counted, timeout=60, every=0.25, what="every accepted event counted")
    return {"events": len(accepted), "seconds": elapsed, "rss": samples}


def assert_flat(samples: list[float]) -> None:
    third = max(len(samples) // 3, 1)
    middle, last = samples[third : 2 * third] or samples, samples[-third:]
    assert max(last) <= max(middle) * 1.15 + 10, f"resident memory grew: {samples}"


def report(result: dict) -> None:
    rss = {k: f"{v[0]:.0f}->{v[-1]:.0f} MiB" for k, v in result["rss"].items()}
    print(
        f"\nsoak: {result['events']:,} events in {result['seconds']:.1f}s "
        f"({result['events'] / result['seconds']:.0f}/s); RSS {rss}"
    )


@pytest.mark.e2e
def test_soak_short(service_env, tmp_path):
    result = run_soak(service_env, tmp_path, seconds=15)
    report(result)
    assert result["events"] == 15_000
    for samples in result["rss"].values():
        assert_flat(samples)


@pytest.mark.soak
def test_soak_two_minutes(service_env, tmp_path):
    result = run_soak(service_env, tmp_path, seconds=120)
    report(result)
    assert result["events"] == 120_000
    for samples in result["rss"].values():
        assert_flat(samples)
