"""The same aggregation in Bytewax (bytewax-redis stream source) over the same stream, and ours.

Bytewax dataflow (one worker, `run_main`): RedisStreamSource over `{prefix}:events` -> decode and
validate each event with the same pydantic contract -> keyed by dossier: drop event_ids seen
before, keep the first received event, digitized and paid-online once -> the dossier's change
of contribution to its (unit, cohort day) -> keyed by unit: running counts -> an in-memory sink.
Its final per-unit counts are checked against the generator's, like ours.

Caveats, said plainly: the bytewax-redis source reads with XREAD from a fixed id (no consumer
group, no XACK) and its partition blocks forever at the end of the stream, so this benchmark
subclasses the partition to stop at the end; Bytewax keeps its state in memory (no DuckDB, no
file, no score updates published), so it does less work than our scoring service.

    uv run python -m bench.peer_bytewax            # 3 runs of 100,000 dossiers
    uv run python -m bench.peer_bytewax --dossiers 2000 --runs 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

import redis

from bench.common import (
    REDIS_URL,
    check_counts,
    cleanup,
    console,
    load_stream,
    machine,
    median,
    new_prefix,
    print_table,
    write_results,
)
from bench.gen_national import COUNT_FIELDS, Feed, FeedPlan, national_units
from bench.scoring import run_once as run_ours


def bytewax_counts(stream: str, codes: frozenset[str]) -> tuple[dict[str, list[int]], float]:
    """Run the Bytewax dataflow over `stream`; (final counts per unit, seconds)."""
    import bytewax.operators as op
    from bytewax.bytewax_redis import RedisStreamSource
    from bytewax.bytewax_redis.sources import _RedisStreamPartition
    from bytewax.dataflow import Dataflow
    from bytewax.outputs import DynamicSink, StatelessSinkPartition
    from bytewax.testing import run_main
    from dvcpulse_shared.events import DossierPaid, DossierReceived, EventAdapter

    url = urlparse(REDIS_URL)
    tz = ZoneInfo("Asia/Ho_Chi_Minh")

    class Bounded(_RedisStreamPartition):
        """Stops at the end of the stream instead of blocking forever (XREAD BLOCK 0)."""

        def next_batch(self):  # type: ignore[no-untyped-def]
            reply = self.redis_conn.xread({self.stream_name: self.resume_id}, count=self.batch_size)
            if not reply:
                raise StopIteration
            messages = reply[0][1]
            self.resume_id = messages[-1][0]
            return messages

    class Source(RedisStreamSource):
        def build_part(self, step_id, for_part, resume_state):  # type: ignore[no-untyped-def]
            return Bounded(self.host, self.port, self.db, for_part, self.batch_size, resume_state)

    final: dict[str, list[int]] = {}

    class Part(StatelessSinkPartition):
        def write_batch(self, items):  # type: ignore[no-untyped-def]
            for unit, counts in items:
                final[unit] = counts

        def close(self) -> None:
            pass

    class Sink(DynamicSink):
        def build(self, step_id, worker_index, worker_count):  # type: ignore[no-untyped-def]
            return Part()

    def decode(entry: tuple[bytes, dict[bytes, bytes]]) -> Any:
        try:
            event = EventAdapter.validate_json(entry[1][b"__data__"])
        except ValueError:
            return None
        return event if event.unit_code in codes else None

    def per_dossier(state: dict[str, Any] | None, event: Any) -> tuple[dict[str, Any], Any]:
        s = state or {"ids": set(), "r": None, "d": False, "p": False}
        if event.event_id in s["ids"]:
            return s, None
        s["ids"].add(event.event_id)
        before = contribution(s)
        if isinstance(event, DossierReceived):
            if s["r"] is None:
                s["r"] = (
                    event.unit_code,
                    event.occurred_at.astimezone(tz).date(),
                    event.channel.value == "online",
                    event.fee_required,
                )
        elif isinstance(event, DossierPaid):
            s["p"] = s["p"] or event.payment_method.value == "online"
        else:
            s["d"] = True
        after = contribution(s)
        if after == before:
            return s, None
        return s, (before, after)

    def contribution(s: dict[str, Any]) -> tuple[str, date, tuple[int, ...]] | None:
        if s["r"] is None:
            return None
        unit, day, online, fee = s["r"]
        return unit, day, (1, int(online), int(s["d"]), int(fee), int(fee and s["p"]))

    def to_unit(change: tuple[Any, Any]) -> list[tuple[str, tuple[int, ...]]]:
        before, after = change
        out = []
        if before is not None:
            out.append((before[0], tuple(-x for x in before[2])))
        if after is not None:
            out.append((after[0], after[2]))
        return out

    def per_unit(state: list[int] | None, delta: tuple[int, ...]) -> tuple[list[int], list[int]]:
        s = state or [0, 0, 0, 0, 0]
        for i, x in enumerate(delta):
            s[i] += x
        return s, list(s)

    flow = Dataflow("dvcpulse_peer")
    src = op.input(
        "in", flow, Source([stream], url.hostname or "127.0.0.1", url.port or 6379, 0, 1000)
    )
    events = op.filter_map("decode", src, decode)
    keyed = op.key_on("dossier", events, lambda e: e.dossier_id)
    changes = op.filter_map_value(
        "per_dossier", op.stateful_map("dossier_state", keyed, per_dossier), lambda x: x
    )
    deltas = op.flat_map("to_unit", changes, lambda kv: to_unit(kv[1]))
    counts = op.stateful_map("unit_counts", deltas, per_unit)
    op.output("out", counts, Sink())
    started = time.perf_counter()
    run_main(flow)
    return final, time.perf_counter() - started


def run_once(dossiers: int, seed: int, work: Path) -> dict[str, Any]:
    prefix = new_prefix("peer")
    units = national_units()
    feed = Feed(units, FeedPlan(dossiers=dossiers, seed=seed))
    payloads = [p for chunk in feed.chunks() for p in chunk]
    client = redis.Redis.from_url(REDIS_URL)
    stream = f"{prefix}:bytewax"
    try:
        load_stream(client, stream, payloads)
        final, seconds = bytewax_counts(stream, frozenset(u.code for u in units))
    finally:
        cleanup(prefix)
        client.close()
    rows = [{"unit_code": u, **dict(zip(COUNT_FIELDS, c, strict=True))} for u, c in final.items()]
    problems = check_counts(
        [r for r in rows if any(r[k] for k in COUNT_FIELDS)], feed.expected.all_time
    )
    peer_rate = len(payloads) / seconds
    ours = run_ours(dossiers, seed, None, work)
    result = {
        "events": len(payloads),
        "bytewax_per_s": peer_rate,
        "bytewax_counts_ok": not problems,
        "ours_per_s": ours["scoring_per_s"],
        "ours_counts_ok": ours["counts_ok"],
        "ours_over_bytewax": ours["scoring_per_s"] / peer_rate,
        "raw_xreadgroup_xack_per_s": ours["raw_xreadgroup_xack_per_s"],
    }
    console.print(
        f"  bytewax {peer_rate:,.0f}/s (counts ok {not problems}); ours {ours['scoring_per_s']:,.0f}/s;"
        f" ours/bytewax {result['ours_over_bytewax']:.2f}"
    )
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Bytewax peer on the same aggregation")
    parser.add_argument("--dossiers", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--name", default="peer_bytewax")
    args = parser.parse_args(argv)
    info = machine()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        for i in range(args.runs):
            console.print(f"[bold]run {i + 1}/{args.runs}[/bold]")
            runs.append(run_once(args.dossiers, args.seed, Path(tmp) / str(i)))
    keys = ("raw_xreadgroup_xack_per_s", "bytewax_per_s", "ours_per_s", "ours_over_bytewax")
    med = {k: median([r[k] for r in runs]) for k in keys}
    ok = all(r["bytewax_counts_ok"] and r["ours_counts_ok"] for r in runs)
    print_table(
        f"peer: Bytewax vs dvcpulse scoring, {runs[0]['events']:,} events, median of {len(runs)}",
        [
            ("raw XREADGROUP(1000)+XACK, events/s", med["raw_xreadgroup_xack_per_s"]),
            ("Bytewax (in-memory state), events/s", med["bytewax_per_s"]),
            ("dvcpulse scoring (DuckDB, scores, XACK), events/s", med["ours_per_s"]),
            ("ours / Bytewax (must be > 1)", med["ours_over_bytewax"]),
            ("both counts equal the generator's", ok),
        ],
    )
    result = {"machine": info, "median": med, "counts_ok": ok, "runs": runs}
    write_results(args.name, result, args.out)
    if not ok:
        raise SystemExit("counts differ from the generator's expected counts")
    return result


if __name__ == "__main__":
    main()
