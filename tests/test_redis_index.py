"""Shared LSH index in a real redis-server (datasketch's Redis storage backend), used by several worker processes."""

from __future__ import annotations

import multiprocessing
import shutil
import socket
import subprocess
import time

import numpy as np
import pyarrow as pa
import pytest

from cotforge.schemas.config_dedup import DedupConfig, MinHashConfig, RedisIndexConfig
from cotforge.tasks.dedup.cluster import dedup_questions
from cotforge.tasks.dedup.index import insert_shared, query_shared, shared_index_filter, shared_lsh
from cotforge.tasks.dedup.minhash import minhash_signatures
from tests.conftest import missing_component


@pytest.fixture
def redis_port(tmp_path):
    if shutil.which("redis-server") is None:
        missing_component("redis-server is not installed (scripts/install_services.sh installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


TEXTS = [f"Question {i}: a shop sells {i} pens at {i + 3} dollars each; what do the pens cost in total?"
         for i in range(40)]


def _worker(port: int, start: int, stop: int) -> None:
    config = MinHashConfig()
    lsh = shared_lsh(RedisIndexConfig(port=port, basename="t"), config, "questions")
    insert_shared(lsh, [f"q{i}" for i in range(start, stop)], minhash_signatures(TEXTS[start:stop], config),
                  config.seed)


def test_redis_shared_index_across_worker_processes(redis_port):
    config = MinHashConfig()
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_worker, args=(redis_port, a, b)) for a, b in ((0, 20), (20, 40))]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    lsh = shared_lsh(RedisIndexConfig(port=redis_port, basename="t"), config, "questions")
    probes = minhash_signatures([TEXTS[3], TEXTS[33] + " ", "Completely different text about sunny weather."],
                                config)
    matches = query_shared(lsh, probes, config.seed, config.threshold)
    assert matches[0] == ("q3", 1.0) and matches[1][0] == "q33" and matches[2] is None
    other = shared_lsh(RedisIndexConfig(port=redis_port, basename="t"), MinHashConfig(num_perm=64), "questions")
    assert query_shared(other, minhash_signatures([TEXTS[3]], MinHashConfig(num_perm=64)), 1, 0.8) == [None]


def test_redis_index_flags_rows_another_build_inserted(redis_port):
    config = DedupConfig(redis=RedisIndexConfig(port=redis_port, basename="builds"))
    first = pa.table({"question_id": ["a", "b"], "text": TEXTS[:2]})
    table, result = dedup_questions(first, config.questions, "r", "b1")
    table = shared_index_filter(table, result, config, "questions")
    assert table.column("keep").to_pylist() == [True, True]
    second = pa.table({"question_id": ["c", "d"], "text": [TEXTS[1] + "  ", TEXTS[5]]})
    table2, result2 = dedup_questions(second, config.questions, "r", "b2")
    table2 = shared_index_filter(table2, result2, config, "questions")
    assert table2.column("keep").to_pylist() == [False, True]
    assert table2.column("drop_reason").to_pylist() == ["earlier_version", None]
    assert table2.column("cluster_id").to_pylist()[0] == "b"
    assert np.isclose(table2.column("similarity").to_pylist()[0], 1.0)
