"""Small versions of every benchmark (seconds, not minutes), so bench/ keeps working.

Timings are printed and written, never asserted; what is asserted is that each benchmark runs
end to end on the real Redis and real services, and that the counts equal the generator's.
"""

from __future__ import annotations

import json

import pytest

from bench import gen_national, ingest, latency, peer_bytewax, scale, scoring, store_growth

pytestmark = pytest.mark.integration


def test_generator_is_deterministic_and_counts_what_it_sends():
    units = gen_national.national_units()
    levels = {u.level for u in units}
    assert len(units) == 10_000 and levels == {"root", "province", "district", "commune"}
    assert len({u.code for u in units}) == len(units)
    a = gen_national.Feed(units, gen_national.FeedPlan(dossiers=500, seed=3))
    b = gen_national.Feed(units, gen_national.FeedPlan(dossiers=500, seed=3))
    chunks_a = [p for c in a.chunks() for p in c]
    assert chunks_a == [p for c in b.chunks() for p in c]
    assert a.expected.totals()["received"] == 500
    assert len(chunks_a) == a.expected.events
    ids = [json.loads(p)["event_id"] for p in chunks_a]
    assert len(ids) - len(set(ids)) == a.expected.duplicates


def test_scoring_bench_small(tmp_path):
    # Small batches: the clock starts at the first acknowledged batch, so a feed this small
    # must span several of them.
    result = scoring.main(
        ["--dossiers", "1500", "--runs", "1", "--batch-size", "500", "--out", str(tmp_path)]
    )
    assert result["counts_ok"]
    assert result["median"]["ratio_vs_raw_read_ack"] > 0
    assert (tmp_path / "scoring.json").exists()


def test_scoring_bench_small_ca_mau(tmp_path):
    result = scoring.main(
        ["--dossiers", "1500", "--runs", "1", "--registry", "ca_mau", "--out", str(tmp_path)]
    )
    assert result["counts_ok"]


def test_ingest_bench_small(tmp_path):
    result = ingest.main(
        ["--events", "3000", "--body-events", "1000", "--runs", "1", "--out", str(tmp_path)]
    )
    assert result["counts_ok"]
    assert result["runs"][0]["in_stream"] == 3000


def test_latency_bench_small(tmp_path):
    result = latency.main(
        ["--rate", "500", "--seconds", "3", "--runs", "1", "--out", str(tmp_path)]
    )
    assert result["counts_ok"]
    assert result["runs"][0]["batches_measured"] == result["runs"][0]["batches_with_received"]


def test_peer_bytewax_bench_small(tmp_path):
    pytest.importorskip("bytewax.bytewax_redis")
    result = peer_bytewax.main(["--dossiers", "800", "--runs", "1", "--out", str(tmp_path)])
    assert result["counts_ok"]


def test_scale_bench_small(tmp_path):
    result = scale.main(
        ["--dossiers", "2000", "--backlog", "1000", "--out", str(tmp_path), "--name", "scale"]
    )
    assert result["counts_ok"]
    assert result["runs"][0]["score_rows"] == 10_000


def test_store_growth_bench_small(tmp_path):
    result = store_growth.main(
        ["--dossiers", "20000", "--batch", "2000", "--out", str(tmp_path), "--name", "store"]
    )
    # The check itself can fail: the stored totals are compared with the generated ones.
    assert result["counts_ok"]
    assert result["counts"]["received"] == 20_000
    assert 0 < result["counts"]["digitized"] < 20_000
    assert len(result["tenths"]) == 10
    assert json.loads((tmp_path / "store.json").read_text())["counts_ok"] is True
