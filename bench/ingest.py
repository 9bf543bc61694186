"""Ingest over HTTP vs raw pipelined XADD, on the same payloads in the same run.

The ingest service runs as a process (`dvcpulse serve ingest`); NDJSON bodies of 10,000 events
of the national feed are POSTed one after another (validation included: every event is checked
by pydantic and against the 10,000-unit registry). The stream must then hold exactly the events
accepted, and every event must be accepted.

    uv run python -m bench.ingest                 # 3 runs of 200,000 events
    uv run python -m bench.ingest --events 20000 --runs 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from bench.common import (
    REDIS_URL,
    Service,
    best_baselines,
    cleanup,
    console,
    machine,
    median,
    mib,
    new_prefix,
    percentile,
    print_table,
    redis_baselines,
    service_env,
    write_results,
)
from bench.gen_national import Feed, FeedPlan, national_units, write_registry


def run_once(events: int, body_events: int, work: Path) -> dict[str, Any]:
    prefix = new_prefix("ingest")
    units_file = write_registry(work / "national_units.csv")
    # ~2.06 events a dossier; cut to exactly `events`.
    feed = Feed(national_units(), FeedPlan(dossiers=events // 2 + 1000))
    payloads = [p for chunk in feed.chunks() for p in chunk][:events]
    bodies = [
        b"\n".join(payloads[i : i + body_events]) for i in range(0, len(payloads), body_events)
    ]
    client = redis.Redis.from_url(REDIS_URL)
    service = Service("ingest", service_env(prefix, work / "data", units_file), work / "logs")
    latencies: list[float] = []
    accepted = rejected = 0
    try:
        before = redis_baselines(payloads, prefix)
        service.start()
        headers = {"content-type": "application/x-ndjson"}
        with httpx.Client(base_url=service.url, timeout=120) as http:
            http.post(
                "/api/v1/events", content=bodies[0][:2000].rsplit(b"\n", 1)[0], headers=headers
            )
            warm = client.xlen(f"{prefix}:events")
            started = time.perf_counter()
            for body in bodies:
                t = time.perf_counter()
                resp = http.post("/api/v1/events", content=body, headers=headers)
                latencies.append(time.perf_counter() - t)
                if resp.status_code != 202:
                    raise RuntimeError(f"ingest answered {resp.status_code}: {resp.text[:300]}")
                data = resp.json()
                accepted += data["accepted"]
                rejected += len(data["rejected"])
            elapsed = time.perf_counter() - started
        in_stream = client.xlen(f"{prefix}:events") - warm
    finally:
        service.stop()
        cleanup(prefix)
        client.close()
    base = best_baselines(before, redis_baselines(payloads, prefix))
    rate = accepted / elapsed
    ok = accepted == len(payloads) and rejected == 0 and in_stream == accepted
    result = {
        "events": len(payloads),
        "body_events": body_events,
        "requests": len(bodies),
        **base,
        "ingest_per_s": rate,
        "ratio_vs_raw_xadd": rate / base["raw_xadd_per_s"],
        "request_p50_ms": percentile(latencies, 0.5) * 1000,
        "request_p95_ms": percentile(latencies, 0.95) * 1000,
        "request_p99_ms": percentile(latencies, 0.99) * 1000,
        "ingest_peak_rss_mib": mib(service.peak_rss),
        "accepted": accepted,
        "rejected": rejected,
        "in_stream": in_stream,
        "counts_ok": ok,
    }
    console.print(
        f"  ingest {rate:,.0f}/s vs raw XADD {base['raw_xadd_per_s']:,.0f}/s = "
        f"{result['ratio_vs_raw_xadd']:.2f}; accepted {accepted:,}, in stream {in_stream:,}"
    )
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="ingest throughput vs raw pipelined XADD")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--body-events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--name", default="ingest")
    args = parser.parse_args(argv)
    info = machine()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        for i in range(args.runs):
            console.print(f"[bold]run {i + 1}/{args.runs}[/bold]")
            runs.append(run_once(args.events, args.body_events, Path(tmp)))
    keys = (
        "raw_xadd_per_s",
        "ingest_per_s",
        "ratio_vs_raw_xadd",
        "request_p50_ms",
        "request_p95_ms",
        "request_p99_ms",
        "ingest_peak_rss_mib",
    )
    med = {k: median([r[k] for r in runs]) for k in keys}
    ok = all(r["counts_ok"] for r in runs)
    print_table(
        f"ingest POST of {args.body_events:,}-event NDJSON bodies, {runs[0]['events']:,} events, "
        f"median of {len(runs)}",
        [
            ("raw pipelined XADD, events/s", med["raw_xadd_per_s"]),
            ("ingest HTTP (validate + atomic Lua XADD), events/s", med["ingest_per_s"]),
            ("ratio (target >= 0.30)", med["ratio_vs_raw_xadd"]),
            (
                "request p50 / p95 / p99, ms",
                f"{med['request_p50_ms']:.0f} / {med['request_p95_ms']:.0f} / {med['request_p99_ms']:.0f}",
            ),
            ("ingest peak RSS, MiB", med["ingest_peak_rss_mib"]),
            ("every event accepted and in the stream", ok),
        ],
    )
    result = {"machine": info, "median": med, "counts_ok": ok, "runs": runs}
    write_results(args.name, result, args.out)
    if not ok:
        raise SystemExit("ingest lost or rejected events")
    return result


if __name__ == "__main__":
    main()
