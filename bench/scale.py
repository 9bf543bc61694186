"""Scale: the national registry (10,000 units in 3 levels) and as many dossiers as you give it.

The scoring service runs as a process with its DuckDB memory limit (DVCPULSE_DUCKDB_MEMORY_LIMIT,
default 256MB). The feed is produced while scoring consumes, with a bounded backlog (so Redis never
holds the whole feed; consumed entries are trimmed), and throughput is recorded per tenth of the
feed so the first tenth can be compared with the last (cost must grow linearly). At the end:
`/api/v1/scores?window=campaign` for all units and `/api/v1/scores/levels?window=campaign` are
timed (median of 5), every unit's counts are checked against the generator's (all time and the
campaign window), and the peak RSS and DuckDB file size are reported.

    uv run python -m bench.scale --dossiers 1000000
    uv run python -m bench.scale --dossiers 2000 --runs 1    # the CI size
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
    DATA_FIELD,
    REDIS_URL,
    Service,
    cleanup,
    console,
    group_progress,
    machine,
    median,
    mib,
    new_prefix,
    print_table,
    service_env,
    verify,
    write_results,
)
from bench.gen_national import Feed, FeedPlan, national_units, write_registry


def timed_get(url: str, path: str, params: dict[str, str], times: int = 5) -> tuple[float, int]:
    out = []
    rows = 0
    with httpx.Client(base_url=url, timeout=120) as http:
        for _ in range(times):
            t = time.perf_counter()
            resp = http.get(path, params=params)
            out.append(time.perf_counter() - t)
            resp.raise_for_status()
            rows = len(resp.json()["rows"])
    return median(out) * 1000, rows


def run_once(
    dossiers: int, seed: int, backlog: int, batch_size: int | None, work: Path
) -> dict[str, Any]:
    prefix = new_prefix("scale")
    units_file = write_registry(work / "national_units.csv")
    feed = Feed(national_units(), FeedPlan(dossiers=dossiers, seed=seed))
    client = redis.Redis.from_url(REDIS_URL)
    stream = f"{prefix}:events"
    extra = {"DVCPULSE_CAMPAIGN": "campaign-2023"}
    if batch_size:
        extra["DVCPULSE_BATCH_SIZE"] = str(batch_size)
    service = Service(
        "scoring", service_env(prefix, work / "data", units_file, **extra), work / "logs"
    )
    added = 0
    marks: list[tuple[float, int]] = []
    try:
        service.start()
        started = time.perf_counter()
        for chunk in feed.chunks(20_000):
            while True:
                read, pending = group_progress(client, stream)
                acked = read - pending
                marks.append((time.perf_counter(), acked))
                if added - acked <= backlog:
                    break
                time.sleep(0.02)
            pipe = client.pipeline(transaction=False)
            for p in chunk:
                pipe.xadd(stream, {DATA_FIELD: p})
            pipe.xtrim(stream, maxlen=backlog * 2 + 40_000, approximate=True)
            pipe.execute()
            added += len(chunk)
            if (
                added * 10 // feed.plan.dossiers // 2
                > (added - len(chunk)) * 10 // feed.plan.dossiers // 2
            ):
                # ~ every tenth of the feed (about 2 events a dossier): progress for long runs
                elapsed = time.perf_counter() - started
                console.print(
                    f"  {marks[-1][1]:,} events counted in {elapsed:,.0f} s "
                    f"({marks[-1][1] / elapsed:,.0f}/s), RSS {mib(service.peak_rss)} MiB",
                    highlight=False,
                )
        while True:
            read, pending = group_progress(client, stream)
            marks.append((time.perf_counter(), read - pending))
            if read - pending >= added:
                break
            time.sleep(0.02)
        total_seconds = time.perf_counter() - started
        scores_ms, score_rows = timed_get(service.url, "/api/v1/scores", {"window": "campaign"})
        levels_ms, _ = timed_get(service.url, "/api/v1/scores/levels", {"window": "campaign"})
        all_units_all_time_ms, _ = timed_get(service.url, "/api/v1/scores", {}, times=3)
        check = verify(service.url, feed.expected)
        health = httpx.get(f"{service.url}/health", timeout=30).json()
    finally:
        service.stop()
        cleanup(prefix)
        client.close()
    # Throughput per tenth of the feed (by events acknowledged).
    tenths = []
    for k in range(10):
        lo, hi = added * k / 10, added * (k + 1) / 10
        seg = [(t, a) for t, a in marks if lo <= a <= hi]
        if len(seg) >= 2 and seg[-1][0] > seg[0][0]:
            tenths.append((seg[-1][1] - seg[0][1]) / (seg[-1][0] - seg[0][0]))
        else:
            tenths.append(None)
    db_bytes = sum(f.stat().st_size for f in (work / "data").glob("scoring.duckdb*"))
    first = next((x for x in tenths if x), None)
    last = next((x for x in reversed(tenths) if x), None)
    result = {
        "dossiers": dossiers,
        "events": added,
        "duplicates": feed.expected.duplicates,
        "overall_per_s": added / total_seconds,
        "per_tenth_per_s": tenths,
        "last_over_first_tenth": (last / first) if first and last else None,
        "scores_campaign_all_units_ms": scores_ms,
        "score_rows": score_rows,
        "levels_campaign_ms": levels_ms,
        "scores_all_time_all_units_ms": all_units_all_time_ms,
        "scoring_peak_rss_mib": mib(service.peak_rss),
        "duckdb_file_mib": mib(db_bytes),
        "db_dossiers": health.get("dossiers"),
        **check,
    }
    console.print(
        f"  {added:,} events at {result['overall_per_s']:,.0f}/s; /scores {scores_ms:.0f} ms, "
        f"/levels {levels_ms:.0f} ms; RSS {result['scoring_peak_rss_mib']} MiB; "
        f"counts ok {check['counts_ok']}"
    )
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="national-size scale benchmark")
    parser.add_argument("--dossiers", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--backlog", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    info = machine()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for i in range(args.runs):
            console.print(f"[bold]run {i + 1}/{args.runs}[/bold]")
            runs.append(
                run_once(
                    args.dossiers, args.seed, args.backlog, args.batch_size, Path(tmp) / str(i)
                )
            )
    keys = (
        "overall_per_s",
        "last_over_first_tenth",
        "scores_campaign_all_units_ms",
        "levels_campaign_ms",
        "scores_all_time_all_units_ms",
        "scoring_peak_rss_mib",
        "duckdb_file_mib",
    )
    med = {k: median([r[k] for r in runs if r[k] is not None]) for k in keys}
    ok = all(r["counts_ok"] for r in runs)
    print_table(
        f"scale: 10,000 units, {args.dossiers:,} dossiers ({runs[0]['events']:,} events), "
        f"median of {len(runs)}",
        [
            ("scoring throughput, events/s (feed produced alongside)", med["overall_per_s"]),
            ("last tenth / first tenth throughput (target >= 0.8)", med["last_over_first_tenth"]),
            (
                "/api/v1/scores?window=campaign, all units, ms (<= 500)",
                med["scores_campaign_all_units_ms"],
            ),
            ("/api/v1/scores/levels?window=campaign, ms (<= 200)", med["levels_campaign_ms"]),
            ("/api/v1/scores all time, all units, ms", med["scores_all_time_all_units_ms"]),
            ("scoring peak RSS, MiB (<= 1024)", med["scoring_peak_rss_mib"]),
            ("DuckDB file, MiB", med["duckdb_file_mib"]),
            ("counts equal the generator's", ok),
        ],
    )
    result = {"machine": info, "median": med, "counts_ok": ok, "runs": runs}
    write_results(args.name or f"scale_{args.dossiers}", result, args.out)
    if not ok:
        raise SystemExit("counts differ from the generator's expected counts")
    return result


if __name__ == "__main__":
    main()
