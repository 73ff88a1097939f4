"""The shared MinHash index in a real redis-server: plain bytes, an atomic check-and-claim, entries only once a build
has published, questions and rationales, and two builds racing without keeping a near-duplicate twice."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from cotforge.schemas.config_dedup import DedupConfig, MinHashConfig, RedisIndexConfig
from cotforge.tasks.dedup.minhash import minhash_signatures
from cotforge.tasks.dedup.shared_index import SharedIndex
from tests.conftest import missing_component

ROOT = Path(__file__).resolve().parents[1]


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
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield port
    proc.terminate()
    proc.wait(timeout=10)


WORDS = ["river", "stone", "maple", "cloud", "harbor", "violin", "lantern", "meadow", "copper", "falcon", "quartz",
         "orchard", "velvet", "glacier", "ember", "thistle", "canyon", "saffron", "beacon", "willow", "marble", "comet",
         "prairie", "tundra", "jasmine", "anchor", "cobalt", "fern", "garnet", "hollow", "ivory", "juniper", "kelp",
         "lotus", "mosaic", "nectar", "opal", "pebble", "quiver", "raven"]


def question_text(i: int, variant: str = "") -> str:
    """Distinct questions (estimated Jaccard <= 0.52 between any two of the first 40); `variant` appended gives a
    near-duplicate (>= 0.93) of the same question."""
    w = random.Random(i).sample(WORDS, 6)
    return (f"Question {i}: a {w[0]} {w[1]} trader sells {i + 2} {w[2]} {w[3]} for {i + 3} coins each near the "
            f"{w[4]} {w[5]}; what is the total price{variant}?")


TEXTS = [question_text(i) for i in range(40)]
CONFIG = MinHashConfig()


def _index(port: int, owner: str, basename: str = "t", config: MinHashConfig = CONFIG, kind: str = "questions",
           ttl: int = 3600) -> SharedIndex:
    return SharedIndex(RedisIndexConfig(port=port, basename=basename, claim_ttl_s=ttl), config, kind, owner)


def _ids(n: int, prefix: str = "q") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def test_redis_claims_are_seen_by_other_builds_and_publish_makes_them_entries(redis_port):
    a, b = _index(redis_port, "build-a"), _index(redis_port, "build-b")
    assert a.check_and_claim(_ids(10), minhash_signatures(TEXTS[:10], CONFIG)) == [None] * 10
    # While A has not published, B's near-duplicates are held back as claimed by a concurrent build.
    probes = [TEXTS[3] + " ", TEXTS[7].replace("pens", "pen"), "Completely different text about sunny weather."]
    matches = b.check_and_claim(["b3", "b7", "b-new"], minhash_signatures(probes, CONFIG))
    assert [m[0] if m else None for m in matches] == ["q3", "q7", None]
    assert matches[0][2] == "claimed" and matches[0][1] >= CONFIG.threshold
    # A publishes: the same rows are now earlier versions for any other build.
    assert a.publish(_ids(10), minhash_signatures(TEXTS[:10], CONFIG)) == [None] * 10
    c = _index(redis_port, "build-c")
    again = c.check_and_claim(["c3"], minhash_signatures([TEXTS[3]], CONFIG))
    assert again == [("q3", 1.0, "published")]
    # A resumed A finds its own rows, not duplicates of them.
    assert a.check_and_claim(_ids(10), minhash_signatures(TEXTS[:10], CONFIG)) == [None] * 10
    # Other MinHash parameters: another index, nothing in common.
    other = _index(redis_port, "build-d", config=MinHashConfig(num_perm=64))
    assert other.check_and_claim(["d3"], minhash_signatures([TEXTS[3]], MinHashConfig(num_perm=64))) == [None]


def test_redis_index_holds_plain_bytes_and_never_unpickles(redis_port, tmp_path):
    import redis

    a = _index(redis_port, "build-a")
    a.check_and_claim(_ids(5), minhash_signatures(TEXTS[:5], CONFIG))
    a.publish(_ids(5), minhash_signatures(TEXTS[:5], CONFIG))
    client = redis.Redis(port=redis_port)
    entry = client.hgetall(f"{a.prefix}:e:q2")
    assert entry[b"state"] == b"published" and entry[b"owner"] == b"build-a"
    assert np.array_equal(np.frombuffer(entry[b"sig"], "<u4"), minhash_signatures([TEXTS[2]], CONFIG)[0])

    # A hostile writer plants a pickle that runs a command when unpickled, as an entry and in a bucket.
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    payload = pickle.dumps(Exploit())
    band = a.rows * 4
    sig = minhash_signatures([TEXTS[1]], CONFIG)[0].astype("<u4").tobytes()
    client.sadd(f"{a.prefix}:b:0:".encode() + sig[:band], payload)
    client.hset(f"{a.prefix}:e:".encode() + payload, mapping={"sig": payload, "group": payload, "state": "published",
                                                                "owner": "evil"})
    matches = _index(redis_port, "build-b").check_and_claim(["b1"], minhash_signatures([TEXTS[1]], CONFIG))
    assert matches == [("q1", 1.0, "published")]  # the planted bytes are compared as a signature, never loaded
    assert not marker.exists()


def test_redis_failed_build_releases_its_claims_and_a_dead_one_expires(redis_port):
    a = _index(redis_port, "build-a")
    a.check_and_claim(_ids(8), minhash_signatures(TEXTS[:8], CONFIG))
    assert a.release() == 8
    b = _index(redis_port, "build-b")
    assert b.check_and_claim(_ids(8, "b"), minhash_signatures(TEXTS[:8], CONFIG)) == [None] * 8  # nothing poisoned

    dying = _index(redis_port, "build-killed", ttl=1)
    dying.check_and_claim(["k20"], minhash_signatures([TEXTS[20]], CONFIG))
    later = _index(redis_port, "build-later")
    assert later.check_and_claim(["l20"], minhash_signatures([TEXTS[20]], CONFIG))[0][0] == "k20"
    time.sleep(2.1)  # the killed build never released its claim: it lapses
    assert later.check_and_claim(["l20"], minhash_signatures([TEXTS[20]], CONFIG)) == [None]
    assert later.publish(["l20"], minhash_signatures([TEXTS[20]], CONFIG)) == [None]


def test_redis_rationales_compare_within_their_question(redis_port):
    config = MinHashConfig(threshold=0.85, shingle="words", shingle_size=3, scope="question")
    text = "Step 1: 12 times 3 is 36. Step 2: add 4 to get 40. The answer is 40."
    a = _index(redis_port, "build-a", config=config, kind="samples")
    b = _index(redis_port, "build-b", config=config, kind="samples")
    a.check_and_claim(["s1"], minhash_signatures([text], config), ["q1"])
    same_question = b.check_and_claim(["s2"], minhash_signatures([text], config), ["q1"])
    other_question = b.check_and_claim(["s3"], minhash_signatures([text], config), ["q2"])
    assert same_question[0][0] == "s1" and other_question == [None]


# --- two builds racing ------------------------------------------------------------------------------------------


def _seed_rows(start: int, stop: int, variant: str = "") -> list[dict]:
    """GSM8K-shaped rows of `question_text`."""
    return [{"question": question_text(i, variant), "answer": f"{i + 2} times {i + 3}\n#### {(i + 2) * (i + 3)}"}
            for i in range(start, stop)]


def _racing_build(port: int, folder: str, rows: list[dict], seed: int, reverse: bool, barrier, step, results) -> None:
    """One build's questions, samples and dedup against the shared index, then its publish step. The question claims
    go in lockstep with the other build (`step`, one barrier per row), so which build wins a contested question
    depends on the claim order, not on which process the OS schedules first; the rest runs freely."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    import cotforge.tasks.dedup.shared_index as shared
    from cotforge.schemas.config_generation import GenerationConfig
    from cotforge.schemas.config_questions import QuestionsConfig
    from cotforge.tasks.core.context import BuildContext
    from cotforge.tasks.core.shards import ShardStore
    from cotforge.tasks.dedup.stage import dedup_shard, publish_shared_index, sample_dedup_shard
    from cotforge.tasks.generate.sample import sample_shard
    from cotforge.tasks.generate.simulated import SimulatedGenerator
    from cotforge.tasks.questions.stage import questions_shards
    from cotforge.tasks.verify.cascade import verify_shard

    shared.BATCH = 1  # one script call per row, so the two builds interleave row by row
    calls = []
    lockstep = {"rows": len(rows)}  # the question claims come first, one per row of this build
    original = shared.SharedIndex._run

    def paced(self, state, ids, signatures, groups, texts=None):  # the real method, one row per call, paced
        order = range(len(ids)) if not reverse else range(len(ids) - 1, -1, -1)
        out = [None] * len(ids)
        for i in order:
            if state == "claimed" and lockstep["rows"] > 0:
                lockstep["rows"] -= 1
                step.wait(60)
            calls.append(time.time())
            out[i] = original(self, state, [ids[i]], signatures[i:i + 1], [groups[i]] if groups else None,
                              [texts[i]] if texts else None)[0]
            time.sleep(0.003)
        return out

    shared.SharedIndex._run = paced
    Path(folder).mkdir(parents=True)
    seed_file = Path(folder) / "seed.jsonl"
    seed_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    store = ShardStore(str(Path(folder) / "out"))
    ctx = BuildContext(store, f"recipe-{Path(folder).name}", seed=seed)
    config = DedupConfig(redis=RedisIndexConfig(port=port, basename="race"))
    generation = GenerationConfig(backend="simulated", samples_per_question=2)
    questions = questions_shards.fn(ctx, QuestionsConfig(sources=[{"kind": "seed", "name": "s", "path": str(seed_file),
                                                                   "answer_format": "gsm8k"}]), 100)
    samples = [sample_shard.fn(ctx, q, SimulatedGenerator(), generation) for q in questions]
    verdicts = [verify_shard.fn(ctx, s, q) for s, q in zip(samples, questions)]
    barrier.wait(60)
    dedup = dedup_shard.fn(ctx, questions, [], [], config)
    sample_dedup = sample_dedup_shard.fn(ctx, samples, verdicts, config)
    publish_shared_index(ctx, {"dedup": [dedup], "sample_dedup": [sample_dedup]}, config)
    kept_q = store.read(dedup).to_pylist()
    kept_s = store.read(sample_dedup).to_pylist()
    texts = {r["question_id"]: r["text"] for r in store.read_all(questions).to_pylist()}
    rationales = {r["sample_id"]: r["text"] for r in store.read_all(samples).to_pylist()}
    results.put({"questions": [(r["question_id"], texts[r["question_id"]], r["keep"], r["drop_reason"])
                               for r in kept_q],
                 "samples": [(r["sample_id"], r["question_id"], rationales[r["sample_id"]], r["keep"],
                              r["drop_reason"]) for r in kept_s],
                 "window": (min(calls), max(calls))})


def _collect(results, builds, timeout: float = 300) -> list[dict]:
    """Each build's outcome; a build that dies fails the test at once instead of after the timeout."""
    import queue

    outcomes, deadline = [], time.time() + timeout
    while len(outcomes) < len(builds) and time.time() < deadline:
        try:
            outcomes.append(results.get(timeout=1))
        except queue.Empty:
            dead = [b.exitcode for b in builds if b.exitcode not in (None, 0)]
            assert not dead, f"a racing build failed (exit codes {dead}); its traceback is in the captured stderr"
    for build in builds:
        build.join(60)
        assert build.exitcode == 0
    assert len(outcomes) == len(builds)
    return outcomes


def _near_duplicates(texts_a: list[str], texts_b: list[str], config: MinHashConfig) -> list[tuple[int, int]]:
    if not texts_a or not texts_b:
        return []
    sa, sb = minhash_signatures(texts_a, config), minhash_signatures(texts_b, config)
    similarity = (sa[:, None, :] == sb[None, :, :]).mean(axis=2)
    return [tuple(p) for p in np.argwhere(similarity >= config.threshold)]


@pytest.mark.slow
def test_redis_two_builds_racing_keep_no_near_duplicate_twice(redis_port, tmp_path):
    """A has questions 0..29; B has 10..24 word for word and near-duplicates of 25..39: 20 contested questions, and
    the rationales of the 15 shared ones (same recipe seed: the simulated solver writes the same rationales). The two
    builds claim row by row, in opposite orders, in lockstep, against one redis-server."""
    context = multiprocessing.get_context("spawn")
    barrier, step, results = context.Barrier(2), context.Barrier(2), context.Queue()
    sides = (("a", _seed_rows(0, 30), False), ("b", _seed_rows(10, 25) + _seed_rows(25, 40, " then"), True))
    builds = [context.Process(target=_racing_build, args=(redis_port, str(tmp_path / name), rows, 1, reverse,
                                                          barrier, step, results))
              for name, rows, reverse in sides]
    for build in builds:
        build.start()
    outcomes = _collect(results, builds)
    a, b = sorted(outcomes, key=lambda o: len([q for q in o["questions"] if "then" in q[1]]))
    assert a["window"][0] < b["window"][1] and b["window"][0] < a["window"][1]  # the claims really overlapped

    config = DedupConfig()
    kept_a = [t for _, t, keep, _ in a["questions"] if keep]
    kept_b = [t for _, t, keep, _ in b["questions"] if keep]
    assert _near_duplicates(kept_a, kept_b, config.questions) == []  # no near-duplicate question kept twice
    assert len(kept_a) + len(kept_b) == 40  # and none lost: each contested question kept by exactly one build
    reasons = {r for side in (a, b) for *_, keep, r in side["questions"] if not keep}
    assert "concurrent_build" in reasons and reasons <= {"concurrent_build", "earlier_version"}
    # The race was real: in lockstep and opposite orders the claims meet in the middle, so each build wins half of
    # the 20 contested questions and loses the other half.
    assert sum(not keep for *_, keep, _ in a["questions"]) == 10
    assert sum(not keep for *_, keep, _ in b["questions"]) == 10

    shared = {q for _, q, *_ in a["samples"]} & {q for _, q, *_ in b["samples"]}
    assert len(shared) == 15
    for question in shared:
        ra = [t for _, q, t, keep, _ in a["samples"] if keep and q == question]
        rb = [t for _, q, t, keep, _ in b["samples"] if keep and q == question]
        assert ra or rb
        assert _near_duplicates(ra, rb, config.samples) == [], question  # no rationale kept twice either


# --- through the build flow ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_redis_flow_enters_rows_only_once_published_and_a_failed_build_releases_its_claims(redis_port, tmp_path,
                                                                                          monkeypatch):
    import redis

    import cotforge.flows.build as build_flow
    from cotforge.schemas.recipe import parse_recipe

    recipe = parse_recipe({
        "name": "redisflow", "seed": 2, "shard_size": 8,
        "questions": {"sources": [{"kind": "family", "family": "arithmetic", "n": 12, "difficulty": 2}]},
        "generation": {"backend": "simulated", "samples_per_question": 3},
        "dedup": {"redis": {"port": redis_port, "basename": "flow"}},
    })
    client = redis.Redis(port=redis_port)

    def states() -> dict[str, int]:
        out: dict[str, int] = {}
        for key in client.scan_iter(match=b"flow:*:e:*"):
            state = client.hget(key, "state").decode()
            out[state] = out.get(state, 0) + 1
        return out

    seen_during_publish = {}
    real_publish = build_flow.publish_views

    def failing_publish(*args, **kwargs):
        seen_during_publish.update(states())  # the claims exist while the build runs...
        raise RuntimeError("disk full while writing the views")

    monkeypatch.setattr(build_flow, "publish_views", failing_publish)
    with pytest.raises(RuntimeError, match="disk full"):
        build_flow.build(recipe, out=str(tmp_path / "out"), version="0.1.0")
    assert seen_during_publish.get("claimed", 0) > 12 and "published" not in seen_during_publish
    assert states() == {} and not list(client.scan_iter(match=b"flow:*:claims:*"))  # ...and are gone after it failed

    monkeypatch.setattr(build_flow, "publish_views", real_publish)
    result = build_flow.build(recipe, out=str(tmp_path / "out"), version="0.1.0")  # resumed: dedup shards reused
    assert sum(result.views.values()) > 0
    entered = states()
    assert set(entered) == {"published"} and entered["published"] > 12  # questions and rationales
    assert not list(client.scan_iter(match=b"flow:*:claims:*"))

    # Another build (another output) of the same questions now finds them all published.
    other = build_flow.build(recipe, out=str(tmp_path / "other"), version="0.1.0")
    assert other.counts.get("questions dropped: earlier version") == 12


# --- exact confirmation and the legacy layout ----------------------------------------------------------------------


def test_redis_dedup_near_threshold_follows_exact_jaccard(redis_port):
    """Pairs whose MinHash estimate is on the wrong side of 0.8: with texts, the shared index decides by exact Jaccard
    (the shingle sets stored with each entry); an entry stored without them falls back to the estimate."""
    from tests.test_dedup_exact import _misjudged_pair

    for above in (True, False):
        a, b, exact, estimate = _misjudged_pair(above)
        owner_a, owner_b = _index(redis_port, f"a-{above}"), _index(redis_port, f"b-{above}")
        assert owner_a.check_and_claim([f"a{above}"], minhash_signatures([a], CONFIG), texts=[a]) == [None]
        match = owner_b.check_and_claim([f"b{above}"], minhash_signatures([b], CONFIG), texts=[b])[0]
        if above:
            assert match is not None and match[0] == f"a{above}" and abs(match[1] - exact) < 1e-3
        else:
            assert match is None  # the estimate (>= 0.8) would have called it a duplicate
    a, b, _, estimate = _misjudged_pair(above=False, seed=1)
    blind = _index(redis_port, "blind", basename="blind")
    blind.check_and_claim(["old"], minhash_signatures([a], CONFIG))  # no texts: no shingle sets stored
    match = _index(redis_port, "other", basename="blind").check_and_claim(["new"], minhash_signatures([b], CONFIG),
                                                                          texts=[b])[0]
    assert match is not None and match[1] == estimate


def test_redis_dedup_adopts_entries_of_the_legacy_layout(redis_port):
    """Entries as the code before 2026-11-30 wrote them (bands x rows of datasketch's optimum in the prefix, no
    shingle sets) are adopted once into the recall-tuned layout: still found, states kept, claims still released."""
    import redis

    from cotforge.tasks.dedup.lsh import lsh_params
    from cotforge.tasks.dedup.shared_index import _prefix

    client = redis.Redis(port=redis_port)
    bands, rows = lsh_params(CONFIG.threshold, CONFIG.num_perm)
    legacy = _prefix("old", "questions", CONFIG, bands, rows)
    signatures = minhash_signatures(TEXTS[:6], CONFIG).astype("<u4")
    for i, sig in enumerate(signatures):
        state = "published" if i < 4 else "claimed"
        mapping = {"sig": sig.tobytes(), "group": "", "state": state, "owner": "build-old"}
        if state == "claimed":
            mapping["expires"] = int(time.time() + 3600)
            client.sadd(f"{legacy}:claims:build-old", f"q{i}")
        client.hset(f"{legacy}:e:q{i}", mapping=mapping)
        for b in range(bands):
            client.sadd(f"{legacy}:b:{b}:".encode() + sig.tobytes()[b * rows * 4:(b + 1) * rows * 4], f"q{i}")
    new = _index(redis_port, "build-new", basename="old")
    assert new.prefix != legacy and new.adopted == 6
    assert _index(redis_port, "build-new2", basename="old").adopted == 0  # once only
    probes = [TEXTS[1] + " ", TEXTS[5], "Completely different text about sunny weather."]
    matches = new.check_and_claim(["n1", "n5", "n-new"], minhash_signatures(probes, CONFIG), texts=probes)
    assert [m[0] if m else None for m in matches] == ["q1", "q5", None]
    assert matches[0][2] == "published" and matches[1][2] == "claimed"
    assert _index(redis_port, "build-old", basename="old").release() == 2  # the old build's claims, in the new layout
