"""Profile the scoring service while it drains a pre-loaded stream: py-spy samples the real
process (every thread: the event loop reading Redis, the decode thread, the DuckDB writer), and
the samples are summed by thread and by function.

    uv run python -m bench.profile_scoring --dossiers 300000 --registry ca_mau
    # writes bench/results/profile_scoring.txt (summary) and profile_scoring.raw (collapsed
    # stacks, for flamegraph tools); needs ptrace rights (root, or CAP_SYS_PTRACE)
    uv run python -m bench.profile_scoring --registry national --gil
    # only the thread holding the GIL at each sample: profile_scoring_gil.txt / .raw

Time inside DuckDB's own C++ threads is not sampled (they are not Python threads); the writer
thread's samples on `ScoreStore.apply` lines are the wait for those statements.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from bench.common import (
    REDIS_URL,
    RESULTS,
    Service,
    cleanup,
    console,
    group_progress,
    load_stream,
    new_prefix,
    service_env,
    time_drain,
)
from bench.scoring import feed_for


def summarise(raw: str, top: int = 30) -> str:
    """Share of samples per thread, and per function: where a sample ends (own) and anywhere
    on its stack (inclusive)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[frames[0]] += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):
            inclusive[frame] += n
    if not total:
        return "no samples\n"
    out = [f"{total} samples"]
    for title, counter, limit in (
        ("threads", threads, 10),
        ("own time (where the sample is)", own, top),
        ("inclusive time (anywhere on the stack)", inclusive, top),
    ):
        out.append(f"\n{title}:")
        out += [f"{n / total * 100:6.1f}%  {name}" for name, n in counter.most_common(limit)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dossiers", type=int, default=300_000)
    parser.add_argument("--registry", choices=("national", "ca_mau"), default="ca_mau")
    parser.add_argument("--seconds", type=int, default=10, help="how long to sample")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--gil", action="store_true", help="sample only the thread holding the GIL (py-spy --gil)"
    )
    args = parser.parse_args(argv)
    spy = shutil.which("py-spy")
    if spy is None:
        raise SystemExit("py-spy is not installed (uv sync installs it with the dev tools)")
    prefix = new_prefix("profile")
    client = redis.Redis.from_url(REDIS_URL)
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        work = Path(tmp)
        units_file, feed = feed_for(args.registry, args.dossiers, 7, work)
        payloads = [p for chunk in feed.chunks() for p in chunk]
        stream = f"{prefix}:events"
        load_stream(client, stream, payloads)
        env = service_env(prefix, work / "data", units_file, DVCPULSE_CAMPAIGN="campaign-2023")
        service = Service("scoring", env, work / "logs")
        name = "profile_scoring_gil" if args.gil else "profile_scoring"
        raw_path = args.out / f"{name}.raw"
        args.out.mkdir(parents=True, exist_ok=True)
        try:
            service.start(wait=False)
            assert service.proc is not None
            # Sample from the first acknowledged batch: past the imports and start-up.
            deadline = time.monotonic() + 120
            while group_progress(client, stream)[0] == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            record = subprocess.Popen(
                [
                    spy,
                    "record",
                    "--pid",
                    str(service.proc.pid),
                    "--duration",
                    str(args.seconds),
                    "--format",
                    "raw",
                    "--output",
                    str(raw_path),
                    "--threads",
                    "--nonblocking",
                    *(["--gil"] if args.gil else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            timing = time_drain(client, stream, len(payloads))
            _, err = record.communicate(timeout=args.seconds + 60)
            if record.returncode != 0:
                raise SystemExit(f"py-spy failed: {err.decode()[-500:]}")
        finally:
            service.stop()
            cleanup(prefix)
            client.close()
    header = (
        f"scoring ({args.registry} registry), {len(payloads):,} events at "
        f"{timing.per_s:,.0f}/s; py-spy samples over {args.seconds:.0f} s of the drain"
        f"{' (only the thread holding the GIL)' if args.gil else ''}\n"
    )
    text = header + summarise(raw_path.read_text())
    (args.out / f"{name}.txt").write_text(text)
    console.print(text)
    console.print(f"written: {args.out / f'{name}.txt'}, {raw_path}")


if __name__ == "__main__":
    main()
