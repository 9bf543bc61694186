"""Crashes, standby, Redis outages: whole services as processes, the real Redis, real DuckDB files.

Counts are compared with a plain-Python oracle of the rules (tests/oracle.py), exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from dvcpulse_shared.streams import DATA_FIELD, SCORING_GROUP, StreamNames

from tests.helpers import ServiceProcess, free_port, services, wait_until
from tests.oracle import expected_counts, messy_feed

pytestmark = pytest.mark.e2e

UNITS = ["CMU-S01", "CMU-S13", "CMU-H01", "CMU-H04", "CMU-H01-X07", "CMU-H01-X17", "CMU-H09-X13"]
COUNT_FIELDS = ("received", "online", "digitized", "fee_required", "paid_online")


def scoring_counts(url: str) -> dict[str, dict[str, int]]:
    rows = httpx.get(f"{url}/api/v1/scores", timeout=30).json()["rows"]
    return {r["unit_code"]: {k: r[k] for k in COUNT_FIELDS} for r in rows if r["received"]}


def preload(client: redis.Redis, stream: str, events: list[dict]) -> None:
    for i in range(0, len(events), 20_000):
        with client.pipeline(transaction=False) as pipe:
            for e in events[i : i + 20_000]:
                pipe.xadd(stream, {DATA_FIELD: orjson.dumps(e)})
            pipe.execute()


def health(url: str) -> dict:
    try:
        resp = httpx.get(f"{url}/health", timeout=5)
        return resp.json() | {"http": resp.status_code}
    except httpx.HTTPError:
        return {"http": 0}


def test_kill_9_in_the_middle_of_200k_events_loses_and_doubles_nothing(
    service_env, sync_redis, settings, tmp_path
):
    names = StreamNames(settings.stream_prefix)
    feed = messy_feed(UNITS, 92_000, seed=11)
    assert len(feed) >= 200_000
    preload(sync_redis, names.events, feed)
    port = free_port()
    env = {**service_env, "DVCPULSE_SCORING_PORT": str(port), "DVCPULSE_BATCH_SIZE": "1000"}
    scoring = ServiceProcess("scoring", env, port, tmp_path).start()
    try:
        progress = wait_until(
            lambda: (h := health(scoring.url)).get("dossiers", 0) > 20_000 and h,
            timeout=120,
            every=0.05,
            what="scoring part-way through",
        )
        scoring.kill(signal.SIGKILL)
        assert progress["dossiers"] < 92_000, "the crash must happen mid-stream"
        pending = sync_redis.xpending(names.events, SCORING_GROUP)["pending"]
        scoring.start()
        wait_until(
            lambda: (
                sync_redis.xpending(names.events, SCORING_GROUP)["pending"] == 0
                and (g := sync_redis.xinfo_groups(names.events)[0])["lag"] == 0
                and g
            ),
            timeout=240,
            every=0.25,
            what="all entries acknowledged after restart",
        )
        assert scoring_counts(scoring.url) == expected_counts(feed)
        print(
            f"\nkilled at {progress['dossiers']:,} dossiers with {pending:,} pending; "
            f"{len(feed):,} events, counts exact after restart"
        )
    finally:
        scoring.stop()


def test_a_second_scoring_instance_waits_as_standby(service_env, tmp_path, sync_redis, settings):
    names = StreamNames(settings.stream_prefix)
    p1, p2 = free_port(), free_port()
    first = ServiceProcess(
        "scoring", {**service_env, "DVCPULSE_SCORING_PORT": str(p1)}, p1, tmp_path
    ).start()
    second = ServiceProcess(
        "scoring",
        {**service_env, "DVCPULSE_SCORING_PORT": str(p2), "DVCPULSE_CONSUMER_NAME": "scoring-b"},
        p2,
        tmp_path,
    ).start(wait_healthy=False)
    try:
        standby = wait_until(
            lambda: (h := health(second.url))["http"] == 503 and h,
            timeout=30,
            what="standby answer",
        )
        assert standby["role"] == "standby"
        feed = messy_feed(UNITS, 500, seed=5)
        preload(sync_redis, names.events, feed)
        wait_until(
            lambda: sync_redis.xinfo_groups(names.events)[0]["lag"] == 0, what="first counts"
        )
        first.stop()  # the writer goes away: the standby takes over the same file
        second.wait_healthy(60)
        wait_until(
            lambda: sync_redis.xpending(names.events, SCORING_GROUP)["pending"] == 0, what="acked"
        )
        assert scoring_counts(second.url) == expected_counts(feed)
    finally:
        second.stop()
        first.stop()


def test_sigterm_finishes_the_batch_in_hand_and_exits_cleanly(
    service_env, tmp_path, sync_redis, settings
):
    names = StreamNames(settings.stream_prefix)
    feed = messy_feed(UNITS, 20_000, seed=9)
    preload(sync_redis, names.events, feed)
    port = free_port()
    scoring = ServiceProcess(
        "scoring", {**service_env, "DVCPULSE_SCORING_PORT": str(port)}, port, tmp_path
    ).start()
    try:
        sigterm_then_restart(scoring, sync_redis, names, feed)
    finally:
        scoring.stop()


def sigterm_then_restart(scoring, sync_redis, names, feed) -> None:  # type: ignore[no-untyped-def]
    wait_until(
        lambda: health(scoring.url).get("dossiers", 0) > 2_500, timeout=60, what="some progress"
    )
    scoring.proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal: exit status -SIGTERM.
    assert scoring.proc.wait(40) in (0, -signal.SIGTERM)
    assert "scoring.stopped" in scoring.log_path.read_text()
    # Whatever it had read, it committed and acknowledged: nothing is left pending.
    assert sync_redis.xpending(names.events, SCORING_GROUP)["pending"] == 0
    scoring.start()
    wait_until(
        lambda: (
            sync_redis.xinfo_groups(names.events)[0]["lag"] == 0
            and sync_redis.xpending(names.events, SCORING_GROUP)["pending"] == 0
        ),
        timeout=120,
        what="rest",
    )
    assert scoring_counts(scoring.url) == expected_counts(feed)


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of this test's own (AOF on, fsync always, password), so it can be killed."""
    port = free_port()
    password = "s3cret-test-password"
    workdir = tmp_path / "redis"
    workdir.mkdir()
    cmd = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(workdir),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
        "--requirepass",
        password,
    ]

    class Server:
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        proc: subprocess.Popen | None = None

        def start(self):
            self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_until(lambda: self.ping(), timeout=20, what="private redis")

        def ping(self):
            try:
                return redis.Redis.from_url(self.url, socket_timeout=1).ping()
            except redis.RedisError:
                return False

        def kill(self):
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    server = Server()
    server.start()
    yield server
    if server.proc and server.proc.poll() is None:
        server.kill()


def test_redis_killed_and_restarted_under_load_loses_nothing_accepted(
    private_redis, tmp_path, settings, registry
):
    env = {
        "DVCPULSE_REDIS_URL": private_redis.url,
        "DVCPULSE_DATA_DIR": str(tmp_path / "data"),
        "DVCPULSE_STREAM_PREFIX": settings.stream_prefix,
        "DVCPULSE_BLOCK_MS": "50",
        "DVCPULSE_CLAIM_IDLE_MS": "1000",
    }
    pi, ps = free_port(), free_port()
    ingest = ServiceProcess("ingest", {**env, "DVCPULSE_INGEST_PORT": str(pi)}, pi, tmp_path)
    scoring = ServiceProcess("scoring", {**env, "DVCPULSE_SCORING_PORT": str(ps)}, ps, tmp_path)
    feed = messy_feed(UNITS, 6_000, seed=13)
    told_accepted: list[dict] = []
    statuses: list[int] = []
    stop = threading.Event()

    def client() -> None:
        """A one-stop system that retries on 503 and on connection errors, as told."""
        with httpx.Client(timeout=10) as http:
            for i in range(0, len(feed), 200):
                chunk = feed[i : i + 200]
                while not stop.is_set():
                    try:
                        resp = http.post(f"{ingest.url}/api/v1/events", json=chunk)
                    except httpx.HTTPError:
                        time.sleep(0.1)
                        continue
                    statuses.append(resp.status_code)
                    if resp.status_code == 503:
                        assert resp.headers["retry-after"]
                        time.sleep(0.1)
                        continue
                    assert resp.status_code == 202, resp.text
                    assert resp.json()["accepted"] == len(chunk)
                    told_accepted.extend(chunk)
                    break

    with services(ingest, scoring):
        worker = threading.Thread(target=client)
        worker.start()
        wait_until(lambda: len(told_accepted) > len(feed) // 3, timeout=60, what="traffic")
        private_redis.kill()
        wait_until(lambda: 503 in statuses, timeout=30, what="a 503 while Redis is down")
        private_redis.start()  # AOF brings back the stream, the group and its pending entries
        worker.join(120)
        stop.set()
        assert len(told_accepted) == len(feed)
        expected = expected_counts(told_accepted)
        wait_until(
            lambda: scoring_counts(scoring.url) == expected,
            timeout=120,
            every=0.5,
            what="counts equal to what the client was told was accepted",
        )
    assert os.path.exists(Path(tmp_path / "data" / "scoring.duckdb"))
