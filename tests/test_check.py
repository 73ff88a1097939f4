"""`cotforge check OUT`: every version against its manifest (`pytest -k check`): a corrupted, a dropped and a truncated
file, an unexpected file, a wrong row count, a wrong schema stamp and a stale `latest` pointer are each named."""

from __future__ import annotations

import os
import shutil

import pyarrow.parquet as pq

from cotforge.flows.cli import main
from cotforge.schemas.views import VIEWS
from cotforge.tasks.publish.manifest import DAMAGED, check_output


def _copy(two_versions, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(two_versions[0], out, symlinks=True)
    return out


def test_check_passes_an_intact_output(two_versions, capsys):
    out = two_versions[0]
    report = check_output(str(out))
    assert report.ok and set(report.versions) == {"0.1.0", "0.2.0"} and report.notes == []
    assert main(["check", str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == ["0.1.0: ok", "0.2.0: ok"]
    assert check_output(str(out / "0.1.0")).ok  # one version folder on its own


def test_check_names_a_corrupted_a_dropped_and_a_truncated_file(two_versions, tmp_path, capsys):
    out = _copy(two_versions, tmp_path)
    corrupted = out / "0.1.0" / "sft" / "train-00000.parquet"
    data = bytearray(corrupted.read_bytes())
    data[16:24] = bytes(b ^ 0xFF for b in data[16:24])  # same size, other bytes (in the first data page)
    corrupted.write_bytes(bytes(data))
    (out / "0.2.0" / "prm" / "train-00000.parquet").unlink()
    truncated = out / "0.2.0" / "rlvr" / "train-00000.parquet"
    size = truncated.stat().st_size
    os.truncate(truncated, size // 2)

    report = check_output(str(out))
    assert not report.ok
    assert report.versions["0.1.0"] == [("sft/train-00000.parquet: checksum differs from the manifest (corrupted or "
                                         "edited)")]
    problems = report.versions["0.2.0"]
    assert "prm/train-00000.parquet: missing" in problems
    assert f"rlvr/train-00000.parquet: {size // 2} bytes, the manifest says {size} (truncated or rewritten)" in problems
    assert any(p.startswith("rlvr/train-00000.parquet: not a readable Parquet file") for p in problems)
    assert len(problems) == 3, problems
    assert main(["check", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "0.1.0: 1 problem(s)" in printed and "0.2.0: 3 problem(s)" in printed
    assert "prm/train-00000.parquet: missing" in printed and "checksum differs" in printed


def test_check_names_extra_files_row_counts_schema_stamps_and_the_latest_pointer(two_versions, tmp_path):
    out = _copy(two_versions, tmp_path)
    (out / "0.1.0" / "sft" / "notes.txt").write_text("added later")
    # A valid Parquet file with one row less than the manifest says.
    fewer = out / "0.2.0" / "sft" / "train-00000.parquet"
    table = pq.read_table(fewer)
    pq.write_table(table.slice(1), fewer)
    # A file stamped with another schema version than the manifest's.
    stamped = out / "0.2.0" / "unpaired" / "train-00000.parquet"
    table = pq.read_table(stamped)
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"cotforge.schema_version": b"2.0.0"}),
                   stamped)
    (out / "latest").unlink()
    os.symlink("0.1.0", out / "latest")
    (out / "0.3.0" / "sft").mkdir(parents=True)  # a version folder without its manifest: damaged

    report = check_output(str(out))
    assert report.versions["0.1.0"] == ["sft/notes.txt: not in the manifest (added after the version was published)"]
    problems = report.versions["0.2.0"]
    sft_rows = two_versions[2].views["sft"]
    assert f"sft: {sft_rows - 1} rows in its files, the manifest says {sft_rows}" in problems
    assert (f"unpaired/train-00000.parquet: stamped unpaired 2.0.0, the manifest says unpaired "
            f"{VIEWS['unpaired'].version}") in problems
    for rewritten in ("sft", "unpaired"):  # both files differ from the bytes the manifest recorded
        assert any(p.startswith(f"{rewritten}/train-00000.parquet: ") and ("checksum" in p or "bytes, the manifest"
                                                                          in p) for p in problems), rewritten
    assert len(problems) == 4, problems
    assert report.problems == ["latest: points at '0.1.0', the latest complete version is 0.2.0"]
    assert report.versions["0.3.0"] == [DAMAGED] and not report.ok


def test_check_fails_a_version_without_manifest_and_any_unlisted_file_hidden_ones_included(two_versions, tmp_path,
                                                                                        capsys):
    out = _copy(two_versions, tmp_path)
    (out / "0.1.0" / "manifest.json").unlink()
    (out / "0.2.0" / "sft" / ".hidden").write_text("x")
    (out / "0.2.0" / ".cache").mkdir()
    (out / "0.2.0" / ".cache" / "x.tmp").write_text("y")
    report = check_output(str(out))
    assert report.versions["0.1.0"] == [DAMAGED]
    assert report.versions["0.2.0"] == [
        ".cache/x.tmp: not in the manifest (added after the version was published)",
        "sft/.hidden: not in the manifest (added after the version was published)"]
    assert main(["check", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "0.1.0: 1 problem(s)" in printed and "sft/.hidden" in printed
    assert main(["check", str(out / "0.1.0")]) == 1, "the version folder itself is checked too"
