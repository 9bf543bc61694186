"""Profile the scoring batch path (ScoringConsumer.process: decode, DuckDB apply, score updates,
publish, XACK) in this process with pyinstrument, over the national feed.

    uv run python -m bench.profile_scoring --dossiers 50000
    # writes bench/results/profile_scoring.txt (and .html); prints the split by stage
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

import redis
from dvcpulse_common.registry import load_registry
from dvcpulse_common.settings import Settings
from dvcpulse_common.targets import load_targets
from dvcpulse_scoring.consumer import ScoringConsumer
from dvcpulse_scoring.metrics import ScoringMetrics
from dvcpulse_scoring.store import ScoreStore
from dvcpulse_shared.streams import SCORING_GROUP
from faststream.redis import RedisBroker

from bench.common import REDIS_URL, RESULTS, cleanup, console, load_stream, new_prefix
from bench.scoring import feed_for


async def drive(
    consumer: ScoringConsumer, total: int, batch: int
) -> tuple[float, dict[str, float]]:
    """Read the stream in batches and run the real batch path; time each stage."""
    stages = {"decode+apply": 0.0, "score_updates": 0.0, "publish": 0.0, "xack": 0.0}
    # Wrap the stages for timing, without changing what they do.
    orig_apply = consumer._decode_and_apply
    orig_updates = consumer.score_updates
    orig_publish = consumer.publish_scores

    def timed_apply(entries):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return orig_apply(entries)
        finally:
            stages["decode+apply"] += time.perf_counter() - t

    async def timed_updates(touched):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return await orig_updates(touched)
        finally:
            stages["score_updates"] += time.perf_counter() - t

    async def timed_publish(updates):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        try:
            return await orig_publish(updates)
        finally:
            stages["publish"] += time.perf_counter() - t

    consumer._decode_and_apply = timed_apply  # type: ignore[method-assign]
    consumer.score_updates = timed_updates  # type: ignore[method-assign]
    consumer.publish_scores = timed_publish  # type: ignore[method-assign]
    done = 0
    started = time.perf_counter()
    while done < total:
        reply = await consumer.redis.xreadgroup(
            SCORING_GROUP, consumer.consumer, {consumer.streams.events: ">"}, count=batch
        )
        entries = reply[0][1] if reply else []
        if not entries:
            break
        await consumer.process(entries)
        done += len(entries)
    elapsed = time.perf_counter() - started
    return done / elapsed, stages


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dossiers", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--no-profiler", action="store_true")
    parser.add_argument("--registry", choices=("national", "ca_mau"), default="national")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.getLogger("dvcpulse.faststream").setLevel(logging.WARNING)
    prefix = new_prefix("profile")
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        work = Path(tmp)
        units_file, feed = feed_for(args.registry, args.dossiers, 7, work)
        settings = Settings(
            redis_url=REDIS_URL,
            data_dir=work / "data",
            stream_prefix=prefix,
            units_file=units_file,
            batch_size=args.batch_size,
            campaign="campaign-2023",
        )
        registry = load_registry(settings.units_file, settings.level_labels)
        target_sets = load_targets(settings.targets_file)
        payloads = [p for chunk in feed.chunks() for p in chunk]
        client = redis.Redis.from_url(REDIS_URL)
        load_stream(client, f"{prefix}:events", payloads)

        async def go() -> tuple[float, dict[str, float]]:
            broker = RedisBroker(REDIS_URL, logger=None)
            store = ScoreStore(settings.duckdb_path, settings.duckdb_memory_limit, 2)
            store.open()
            consumer = ScoringConsumer(
                settings, registry, target_sets, store, broker, ScoringMetrics()
            )
            await broker.connect()
            await consumer.ensure_group()
            try:
                return await drive(consumer, len(payloads), args.batch_size)
            finally:
                await broker.stop()
                store.close()

        try:
            if args.no_profiler:
                rate, stages = asyncio.run(go())
            else:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.001, async_mode="enabled")
                profiler.start()
                rate, stages = asyncio.run(go())
                profiler.stop()
                args.out.mkdir(parents=True, exist_ok=True)
                text = profiler.output_text(unicode=False, color=False, show_all=False)
                (args.out / "profile_scoring.txt").write_text(text)
                (args.out / "profile_scoring.html").write_text(profiler.output_html())
                console.print(f"profile: {args.out / 'profile_scoring.txt'}")
        finally:
            cleanup(prefix)
            client.close()
    total = sum(stages.values())
    console.print(f"{len(payloads):,} events at {rate:,.0f}/s (batch {args.batch_size})")
    for name, seconds in stages.items():
        share = seconds / total * 100 if total else 0.0
        console.print(f"  {name:15s} {seconds:7.3f} s  {share:5.1f}%")


if __name__ == "__main__":
    main()
