"""The scoring store alone, in this process: cost of `ScoreStore.apply` as the dossier table grows.

No Redis on the write path: batches are built column-wise (received events of new dossiers, and
digitized events for 60% of the dossiers received three batches earlier) and applied one after
the other, so what grows with the table shows up per tenth without the feed or the network in
the way. The same run's raw Redis XREADGROUP+XACK rate over as many ~250-byte entries as one
batch is printed beside the apply rate. At the end the stored counts are checked against the
generated ones (received, online, fee_required, digitized; nothing is paid here).

    uv run python -m bench.store_growth --dossiers 10000000 --memory-limit 512MB
    uv run python -m bench.store_growth --dossiers 20000 --batch 2000    # the CI size
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from dvcpulse_scoring.domain import BATCH_SCHEMA, YEAR_ONE_US, DecodedBatch
from dvcpulse_scoring.store import ScoreStore

from bench.common import console, machine, mib, own_prefix, print_table, redis_baselines
from bench.common import write_results as write_json

UNITS = 10_000
DAYS = 365
DIGITIZED_SHARE = 0.6
DAY0_US = 1_672_531_200_000_000  # 2023-01-01T00:00:00Z


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


class Feed:
    """Dossier n is received on day n * 365 // total in unit n's random unit, with random
    channel/fee flags; 60% are digitized three batches later."""

    def __init__(self, dossiers: int, batch: int, seed: int) -> None:
        self.n, self.batch = dossiers, batch
        rng = np.random.default_rng(seed)
        self.unit_of = rng.integers(0, UNITS, dossiers, dtype=np.int32)
        self.flags = rng.integers(0, 4, dossiers).astype(np.uint8)
        self.digitized = rng.random(dossiers) < DIGITIZED_SHARE
        self.codes = np.array([f"U{i:05d}" for i in range(UNITS)], dtype=object)
        self.lag = 3 * batch

    def ids(self, idx: np.ndarray) -> list[str]:
        return [f"D{i:09d}" for i in idx.tolist()]

    def batches(self):  # type: ignore[no-untyped-def]
        for k in range(0, self.n + self.lag, self.batch):
            parts = []
            if k < self.n:
                idx = np.arange(k, min(k + self.batch, self.n))
                day = (idx * DAYS // self.n).astype(np.int64)
                ids = self.ids(idx)
                micros = ((day * 86_400 + 3_600) * 1_000_000 + DAY0_US + YEAR_ONE_US).tolist()
                flags = self.flags[idx]
                parts.append(
                    pa.table(
                        {
                            "type": ["dossier.received"] * len(idx),
                            "dossier_id": ids,
                            "unit_code": self.codes[self.unit_of[idx]].tolist(),
                            "day": pa.array(
                                np.datetime64("2023-01-01") + day.astype("timedelta64[D]"),
                                pa.date32(),
                            ),
                            "flags": pa.array(flags, pa.uint8()),
                            "received_rank": [
                                f"{m:020d}|{i}:r\x01{f}"
                                for m, i, f in zip(micros, ids, flags.tolist(), strict=True)
                            ],
                        },
                        schema=BATCH_SCHEMA,
                    )
                )
            lo, hi = max(k - self.lag, 0), min(k - self.lag + self.batch, self.n)
            if hi > lo:
                idx = np.arange(lo, hi)
                idx = idx[self.digitized[idx]]
                m = len(idx)
                parts.append(
                    pa.table(
                        {
                            "type": ["dossier.digitized"] * m,
                            "dossier_id": self.ids(idx),
                            "unit_code": self.codes[self.unit_of[idx]].tolist(),
                            "day": pa.nulls(m, pa.date32()),
                            "flags": pa.array(np.full(m, 4, np.uint8)),
                            "received_rank": pa.nulls(m, pa.string()),
                        },
                        schema=BATCH_SCHEMA,
                    )
                )
            yield min(k + self.batch, self.n), DecodedBatch(tables=parts)

    def expected(self) -> dict[str, int]:
        return {
            "received": self.n,
            "online": int((self.flags & 1 != 0).sum()),
            "digitized": int(self.digitized.sum()),
            "fee_required": int((self.flags & 2 != 0).sum()),
            "paid_online": 0,
        }


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    feed = Feed(args.dossiers, args.batch, args.seed)
    # Raw Redis over as many ~250-byte entries as one batch holds events (same run, same machine).
    with own_prefix("store-growth") as prefix:
        sample = [b'{"padding":"' + b"x" * 236 + b'"}'] * int(args.batch * 1.6)
        raw = redis_baselines(sample, prefix)
    store = ScoreStore(
        work / "scoring.duckdb",
        memory_limit=args.memory_limit,
        checkpoint_threshold=args.checkpoint_threshold,
    )
    store.open()
    tenths: list[dict[str, float]] = []
    total_s, events, mark_s, mark_events = 0.0, 0, 0.0, 0
    step = max(args.dossiers // 10, 1)
    last_tenth = 0
    try:
        for dossiers_so_far, batch in feed.batches():
            started = time.perf_counter()
            store.apply(batch)
            total_s += time.perf_counter() - started
            events += len(batch)
            if dossiers_so_far // step > last_tenth:  # a tenth of the dossiers more
                last_tenth = dossiers_so_far // step
                us = (total_s - mark_s) / max(events - mark_events, 1) * 1e6
                tenths.append(
                    {
                        "dossiers": dossiers_so_far,
                        "us_per_event": us,
                        "rss_mib": rss_mib(),
                        "file_mib": mib(store.path.stat().st_size),
                    }
                )
                console.print(
                    f"  {dossiers_so_far:>11,} dossiers: {us:6.2f} µs an event this tenth, "
                    f"RSS {rss_mib():,.0f} MiB",
                    highlight=False,
                )
                mark_s, mark_events = total_s, events
        stored = store.conn.execute(
            "SELECT sum(received), sum(online), sum(digitized), sum(fee_required), "
            "sum(paid_online) FROM unit_day"
        ).fetchall()[0]
    finally:
        store.close()
    got = dict(zip(feed.expected(), map(int, stored), strict=True))
    apply_per_s = events / total_s
    return {
        "dossiers": args.dossiers,
        "events": events,
        "events_per_batch": events / max(len(range(0, feed.n + feed.lag, feed.batch)), 1),
        "raw_xreadgroup_xack_per_s": raw["raw_xreadgroup_xack_per_s"],
        "apply_per_s": apply_per_s,
        "ratio_vs_raw_read_ack": apply_per_s / raw["raw_xreadgroup_xack_per_s"],
        "last_over_first_tenth": tenths[0]["us_per_event"] / tenths[-1]["us_per_event"],
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "duckdb_file_mib": tenths[-1]["file_mib"],
        "tenths": tenths,
        "counts": got,
        "counts_ok": got == feed.expected(),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="scoring store apply cost as the table grows")
    parser.add_argument("--dossiers", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=50_000, help="new dossiers a batch")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--memory-limit", default="512MB")
    parser.add_argument("--checkpoint-threshold", default="16MB")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--name", default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        result = run(args, Path(tmp))
    print_table(
        f"scoring store alone, {args.dossiers:,} dossiers ({result['events']:,} events, "
        f"~{result['events_per_batch']:,.0f} a batch), DuckDB memory limit {args.memory_limit}",
        [
            ("raw XREADGROUP(1000)+XACK, events/s", result["raw_xreadgroup_xack_per_s"]),
            ("store apply (DuckDB only), events/s", result["apply_per_s"]),
            ("ratio apply / raw read+ack", result["ratio_vs_raw_read_ack"]),
            ("last tenth / first tenth throughput", result["last_over_first_tenth"]),
            ("peak RSS of this process, MiB", result["peak_rss_mib"]),
            ("DuckDB file, MiB", result["duckdb_file_mib"]),
            ("counts equal the generated ones", result["counts_ok"]),
        ],
    )
    write_json(
        args.name or f"store_growth_{args.dossiers}", {"machine": machine(), **result}, args.out
    )
    if not result["counts_ok"]:
        raise SystemExit(f"counts differ: {result['counts']} != expected")
    return result


if __name__ == "__main__":
    main()
