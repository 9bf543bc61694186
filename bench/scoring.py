"""Scoring end to end vs raw XREADGROUP+XACK, on the same payloads in the same run.

Events of the national feed are pre-loaded in `{prefix}:events`; the scoring service is started
as a process (`dvcpulse serve scoring`) and the clock runs from its first acknowledged batch
until every entry is counted in DuckDB and acknowledged (score updates published on the way).
Then every unit's counts (all time and campaign window) are checked against the generator's.

    uv run python -m bench.scoring                 # 3 runs of 100,000 dossiers (~206k events)
    uv run python -m bench.scoring --dossiers 5000 --runs 1
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import redis

from bench.common import (
    REDIS_URL,
    REPO,
    Service,
    best_baselines,
    cleanup,
    console,
    load_stream,
    machine,
    median,
    mib,
    new_prefix,
    print_table,
    redis_baselines,
    service_env,
    time_drain,
    verify,
    write_results,
)
from bench.gen_national import Feed, FeedPlan, national_units, registry_units, write_registry

CA_MAU_UNITS = REPO / "config" / "ca_mau" / "units.csv"


def feed_for(registry: str, dossiers: int, seed: int, work: Path) -> tuple[Path, Feed]:
    """The units file and the feed: the national registry (10,000 units) or Cà Mau's (129)."""
    if registry == "national":
        units_file = write_registry(work / "national_units.csv")
        return units_file, Feed(national_units(), FeedPlan(dossiers=dossiers, seed=seed))
    return CA_MAU_UNITS, Feed(registry_units(CA_MAU_UNITS), FeedPlan(dossiers=dossiers, seed=seed))


def run_once(
    dossiers: int, seed: int, batch_size: int | None, work: Path, registry: str = "national"
) -> dict[str, Any]:
    prefix = new_prefix("scoring")
    units_file, feed = feed_for(registry, dossiers, seed, work)
    payloads = [p for chunk in feed.chunks() for p in chunk]
    client = redis.Redis.from_url(REDIS_URL)
    data_dir = Path(tempfile.mkdtemp(prefix="scoring-", dir=work))
    extra = {"DVCPULSE_CAMPAIGN": "campaign-2023"}
    if batch_size:
        extra["DVCPULSE_BATCH_SIZE"] = str(batch_size)
    service = Service("scoring", service_env(prefix, data_dir, units_file, **extra), work / "logs")
    try:
        before = redis_baselines(payloads, prefix)
        stream = f"{prefix}:events"
        load_stream(client, stream, payloads)
        service.start(wait=False)
        timing = time_drain(client, stream, len(payloads))
        service.wait_healthy()
        score_updates = client.xlen(f"{prefix}:scores")
        check = verify(service.url, feed.expected)
    finally:
        service.stop()
        cleanup(prefix)
        client.close()
    base = best_baselines(before, redis_baselines(payloads, prefix))
    db_bytes = sum(f.stat().st_size for f in data_dir.glob("scoring.duckdb*"))
    result = {
        "registry": registry,
        "dossiers": dossiers,
        "events": len(payloads),
        "duplicates": feed.expected.duplicates,
        **base,
        "scoring_per_s": timing.per_s,
        "timed_events": timing.events,
        "timed_seconds": timing.seconds,
        "ratio_vs_raw_read_ack": timing.per_s / base["raw_xreadgroup_xack_per_s"],
        "score_updates_published": score_updates,
        "scoring_peak_rss_mib": mib(service.peak_rss),
        "duckdb_file_mib": mib(db_bytes),
        **check,
    }
    console.print(
        f"  scoring {timing.per_s:,.0f}/s vs raw {base['raw_xreadgroup_xack_per_s']:,.0f}/s "
        f"= {result['ratio_vs_raw_read_ack']:.2f}; counts ok: {check['counts_ok']}"
    )
    if not check["counts_ok"]:
        console.print(check["mismatches"])
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="scoring throughput vs raw Redis")
    parser.add_argument("--dossiers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--registry", choices=("national", "ca_mau"), default="national")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--name", default="scoring")
    args = parser.parse_args(argv)
    info = machine()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        for i in range(args.runs):
            console.print(f"[bold]run {i + 1}/{args.runs}[/bold]")
            runs.append(
                run_once(args.dossiers, args.seed, args.batch_size, Path(tmp), args.registry)
            )
    keys = (
        "raw_xadd_per_s",
        "raw_xreadgroup_xack_per_s",
        "scoring_per_s",
        "ratio_vs_raw_read_ack",
        "scoring_peak_rss_mib",
        "duckdb_file_mib",
    )
    med = {k: median([r[k] for r in runs]) for k in keys}
    ok = all(r["counts_ok"] for r in runs)
    print_table(
        f"scoring end to end, {args.registry} registry, {runs[0]['events']:,} events, "
        f"median of {len(runs)}",
        [
            ("raw XREADGROUP(1000)+XACK, events/s (better of 2)", med["raw_xreadgroup_xack_per_s"]),
            ("scoring (decode+DuckDB+scores+XACK), events/s", med["scoring_per_s"]),
            ("ratio (target >= 0.50)", med["ratio_vs_raw_read_ack"]),
            ("raw pipelined XADD, events/s (loading)", med["raw_xadd_per_s"]),
            ("scoring peak RSS, MiB", med["scoring_peak_rss_mib"]),
            ("DuckDB file, MiB", med["duckdb_file_mib"]),
            ("score updates published (run 1)", runs[0]["score_updates_published"]),
            ("counts equal the generator's", ok),
        ],
    )
    result = {"machine": info, "median": med, "counts_ok": ok, "runs": runs}
    write_results(args.name, result, args.out)
    if not ok:
        raise SystemExit("counts differ from the generator's expected counts")
    return result


if __name__ == "__main__":
    main()
