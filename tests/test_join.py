"""The join of stage records: a step that reads it shard by shard (step labelling) reads the build's global dedup
tables once, and gets exactly the rows of its own questions."""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from cotforge.tasks.core import join
from cotforge.tasks.core.shards import ShardStore


def test_rows_of_questions_reads_each_table_once_and_slices_exactly(tmp_path, monkeypatch):
    store = ShardStore(str(tmp_path))
    ids = [f"q{i % 37:03d}" for i in range(500)]  # unsorted, 13-14 rows per question
    table = pa.table({"question_id": ids, "row": list(range(500))})
    shards = [store.write("sample_dedup", f"k{lo}", table.slice(lo, 100)) for lo in range(0, 500, 100)]
    reads = []
    original = store.read
    monkeypatch.setattr(store, "read", lambda ref, columns=None: reads.append(ref.key) or original(ref, columns))
    expected = pl.from_arrow(table)
    for wanted in (["q005", "q001", "q005"], ["q036"], [], ["missing", "q000"], sorted(set(ids))):
        got = join.rows_of_questions(store, shards, pl.Series(wanted, dtype=pl.Utf8))
        want = expected.filter(pl.col("question_id").is_in(wanted))
        assert sorted(got["row"].to_list()) == sorted(want["row"].to_list())
    assert len(reads) == len(shards)  # five calls, each shard read once
