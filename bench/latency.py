"""Latency at a steady rate over HTTP: from ingest's 202 answer to the event being visible in
scoring's `GET /api/v1/scores`.

Ingest and scoring run as processes (the Cà Mau registry, default settings). The sender POSTs
NDJSON batches of the Cà Mau feed at a fixed rate (default 1,000 events/s in 10 batches a
second) and notes, for each batch, when its 202 came back and how many distinct dossiers had
been received up to and including it. A poller reads `/api/v1/scores` (all units) back to back;
a batch is visible once the summed `received` reaches its number, and its latency is the time
from its 202 to the end of the first poll that showed it (the poll's own duration included, so
the figure errs high). Final counts are checked against the generator's.

    uv run python -m bench.latency                 # 3 runs of 30 s at 1,000 events/s
    uv run python -m bench.latency --seconds 5 --runs 1
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.common import (
    Service,
    cleanup,
    console,
    machine,
    median,
    mib,
    new_prefix,
    percentile,
    print_table,
    service_env,
    verify,
    write_results,
)
from bench.gen_national import Feed, FeedPlan, registry_units
from bench.scoring import CA_MAU_UNITS


def run_once(rate: float, seconds: float, per_second: int, work: Path) -> dict[str, Any]:
    prefix = new_prefix("latency")
    events_needed = int(rate * seconds)
    feed = Feed(registry_units(CA_MAU_UNITS), FeedPlan(dossiers=events_needed // 2 + 200))
    payloads = [p for chunk in feed.chunks(5_000) for p in chunk]
    # Only part of the feed is sent: expected counts are recomputed from what is sent.
    payloads = payloads[:events_needed]
    env = service_env(prefix, work / "data", None, DVCPULSE_CAMPAIGN="campaign-2023")
    ingest = Service("ingest", env, work / "logs")
    scoring = Service("scoring", env, work / "logs")
    batch = max(int(rate / per_second), 1)
    marks: list[tuple[float, int]] = []  # (202 time, distinct dossiers received so far)
    seen_received: set[str] = set()
    latencies: list[float] = []
    stop = threading.Event()
    polls: list[float] = []

    def poller() -> None:
        next_mark = 0
        with httpx.Client(base_url=scoring.url, timeout=30) as http:
            while not stop.is_set() or next_mark < len(marks):
                t = time.perf_counter()
                rows = http.get("/api/v1/scores").json()["rows"]
                seen = time.perf_counter()
                polls.append(seen - t)
                total = sum(r["received"] for r in rows)
                while next_mark < len(marks) and marks[next_mark][1] <= total:
                    latencies.append(seen - marks[next_mark][0])
                    next_mark += 1
                if stop.is_set() and next_mark < len(marks) and time.perf_counter() > deadline:
                    break

    deadline = float("inf")
    try:
        scoring.start()
        ingest.start()
        watcher = threading.Thread(target=poller, daemon=True)
        watcher.start()
        headers = {"content-type": "application/x-ndjson"}
        started = time.perf_counter()
        with httpx.Client(base_url=ingest.url, timeout=30) as http:
            for n, i in enumerate(range(0, len(payloads), batch)):
                chunk = payloads[i : i + batch]
                due = started + n / per_second
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                resp = http.post("/api/v1/events", content=b"\n".join(chunk), headers=headers)
                answered = time.perf_counter()
                if resp.status_code != 202:
                    raise RuntimeError(f"ingest answered {resp.status_code}: {resp.text[:300]}")
                before = len(seen_received)
                for p in chunk:
                    event = orjson.loads(p)
                    if event["type"] == "dossier.received":
                        seen_received.add(event["dossier_id"])
                if len(seen_received) > before:
                    marks.append((answered, len(seen_received)))
            sent_seconds = time.perf_counter() - started
        deadline = time.perf_counter() + 60
        stop.set()
        watcher.join(90)
        # The expected counts of exactly what was sent.
        sent = [orjson.loads(p) for p in payloads]
        check = verify_sent(scoring.url, sent)
    finally:
        stop.set()
        ingest.stop()
        scoring.stop()
        cleanup(prefix)
    result = {
        "rate_target_per_s": rate,
        "rate_sent_per_s": len(payloads) / sent_seconds,
        "events": len(payloads),
        "batches_measured": len(latencies),
        "batches_with_received": len(marks),
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "poll_p50_ms": percentile(polls, 0.5) * 1000,
        "ingest_peak_rss_mib": mib(ingest.peak_rss),
        "scoring_peak_rss_mib": mib(scoring.peak_rss),
        **check,
    }
    console.print(
        f"  sent {result['rate_sent_per_s']:,.0f}/s; latency p50 {result['p50_ms']:.0f} ms, "
        f"p95 {result['p95_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms; counts ok {check['counts_ok']}"
    )
    return result


def verify_sent(url: str, sent: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts of exactly the events sent (the first received event of a dossier wins; every
    dossier here has one), against /api/v1/scores."""
    from bench.gen_national import Expected

    dossiers: dict[str, dict[str, Any]] = {}
    for e in sent:
        d = dossiers.setdefault(e["dossier_id"], {"unit": e["unit_code"]})
        if e["type"] == "dossier.received":
            d.setdefault("received", e)
        elif e["type"] == "dossier.digitized":
            d["digitized"] = True
        elif e["payment_method"] == "online":
            d["paid_online"] = True
    from datetime import datetime
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Ho_Chi_Minh")
    exp = Expected()
    for d in dossiers.values():
        r = d.get("received")
        if r is None:
            continue  # an orphan: counts nothing yet
        day = datetime.fromisoformat(r["occurred_at"].replace("Z", "+00:00")).astimezone(tz).date()
        fee = bool(r["fee_required"])
        exp.add(
            r["unit_code"],
            day,
            (
                1,
                int(r["channel"] == "online"),
                int(d.get("digitized", False)),
                int(fee),
                int(fee and d.get("paid_online", False)),
            ),
        )
    return verify(url, exp)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="202 -> visible in /api/v1/scores latency")
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--batches-per-second", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--name", default="latency")
    args = parser.parse_args(argv)
    info = machine()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-latency-") as tmp:
        for i in range(args.runs):
            console.print(f"[bold]run {i + 1}/{args.runs}[/bold]")
            runs.append(
                run_once(args.rate, args.seconds, args.batches_per_second, Path(tmp) / str(i))
            )
    keys = (
        "rate_sent_per_s",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "max_ms",
        "poll_p50_ms",
        "ingest_peak_rss_mib",
        "scoring_peak_rss_mib",
    )
    med = {k: median([r[k] for r in runs]) for k in keys}
    ok = all(r["counts_ok"] for r in runs)
    print_table(
        f"latency 202 -> visible in /api/v1/scores at {args.rate:,.0f} events/s over HTTP, "
        f"{args.seconds:.0f} s, median of {len(runs)}",
        [
            ("events/s sent", med["rate_sent_per_s"]),
            ("p50 ms (target <= 300)", med["p50_ms"]),
            ("p95 ms", med["p95_ms"]),
            ("p99 ms (target <= 1000)", med["p99_ms"]),
            ("max ms", med["max_ms"]),
            ("one /api/v1/scores poll, p50 ms", med["poll_p50_ms"]),
            ("ingest peak RSS, MiB", med["ingest_peak_rss_mib"]),
            ("scoring peak RSS, MiB", med["scoring_peak_rss_mib"]),
            ("counts equal what was sent", ok),
        ],
    )
    result = {"machine": info, "median": med, "counts_ok": ok, "runs": runs}
    write_results(args.name, result, args.out)
    if not ok:
        raise SystemExit("counts differ from what was sent")
    return result


if __name__ == "__main__":
    main()
