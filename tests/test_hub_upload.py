"""The upload path of a push: LFS on purpose even where hf_xet is installed, and the token scan read in chunks."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cotforge.tasks.publish.hub import TokenLeakError, _check_no_token, push_folder, stream_contains
from cotforge.tasks.publish.retry import RetryPolicy

FAST = RetryPolicy(retries=2, base_wait=0.01, max_wait=0.02)


def tiny_build(folder: Path) -> str:
    """The files a finished build folder publishes, minus the work a build does: a card and one Parquet view."""
    (folder / "sft").mkdir(parents=True)
    (folder / "README.md").write_text("---\nconfigs:\n- config_name: sft\n  data_files: sft/*.parquet\n---\n# t\n")
    pq.write_table(pa.table({"prompt": [f"q{i}" for i in range(2000)], "noise": [os.urandom(16) for _ in range(2000)]}),
                   folder / "sft" / "train-00000.parquet")
    return str(folder)


@pytest.fixture
def xet_as_in_production():
    """Undo the test environment's Xet switch: the library behaves as on a user's machine with hf_xet installed."""
    from huggingface_hub import constants
    from huggingface_hub.utils._runtime import is_xet_available

    saved = constants.HF_HUB_DISABLE_XET, os.environ.get("HF_HUB_DISABLE_XET")
    constants.HF_HUB_DISABLE_XET = False
    os.environ.pop("HF_HUB_DISABLE_XET", None)
    if not is_xet_available():
        pytest.fail("hf_xet is not installed, but the lock pins it: run scripts/setup.sh")
    yield
    constants.HF_HUB_DISABLE_XET = saved[0]
    if saved[1] is not None:
        os.environ["HF_HUB_DISABLE_XET"] = saved[1]


def test_push_uploads_through_lfs_even_with_hf_xet_installed(hub_server, xet_as_in_production, tmp_path):
    from huggingface_hub import constants

    out = tiny_build(tmp_path / "build")
    result = push_folder(out, "org/lfs", "0.1.0", retry=FAST)
    assert hub_server.tags("org/lfs") == {"0.1.0": result.commit}
    assert hub_server.calls("/info/lfs/objects/batch", "POST") and hub_server.calls("/lfs-objects/", "PUT")
    assert not hub_server.calls("xet-")  # no Xet token asked for: the upload did not go through hf_xet
    parquet = Path(out, "sft", "train-00000.parquet").read_bytes()
    assert hub_server.files("org/lfs", "0.1.0")["sft/train-00000.parquet"] == parquet
    assert constants.HF_HUB_DISABLE_XET is False  # the switch is scoped to the push


def test_without_the_switch_hf_xet_takes_the_upload_and_this_server_cannot(hub_server, xet_as_in_production,
                                                                          tmp_path):
    """The control: with Xet left on, the library asks for a Xet token, a protocol the LFS-only test Hub (like any
    server built from the published spec) does not speak; so the test above really exercised the switch. Run in a
    fresh interpreter: huggingface_hub keeps process-wide state (cached Xet availability, sessions) that earlier
    tests of the suite have set."""
    import subprocess
    import sys

    out = Path(tiny_build(tmp_path / "build"))
    script = (
        "from huggingface_hub import CommitOperationAdd, HfApi\n"
        "api = HfApi()\n"
        "api.create_repo('org/xet', repo_type='dataset')\n"
        f"parquet = {str(out / 'sft' / 'train-00000.parquet')!r}\n"
        "api.create_commit('org/xet', [CommitOperationAdd('sft/a.parquet', parquet)], repo_type='dataset',"
        " commit_message='x')\n")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_XET"}
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0  # hf_xet reports the refused token request with its own error types
    assert hub_server.calls("/xet-write-token/", "GET"), run.stderr[-2000:]
    assert not hub_server.calls("/lfs-objects/", "PUT")


class _Spy(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.largest = 0

    def read(self, size=-1):
        self.largest = max(self.largest, size if size is not None and size >= 0 else len(self.getvalue()))
        return super().read(size)


@pytest.mark.parametrize("offset", [0, 1, 4090, 4093, 4096, 4100, 3 * 4096 - 5, 10_000 - 36])
def test_token_scan_finds_the_token_across_chunk_boundaries(offset):
    token = b"hf_" + b"A" * 33
    data = bytearray(os.urandom(10_000).replace(b"h", b"x"))
    data[offset:offset + len(token)] = token
    spy = _Spy(bytes(data))
    assert stream_contains(spy, token, chunk_size=4096)
    assert spy.largest == 4096  # never more than one chunk asked for


def test_token_scan_passes_clean_files_and_refuses_a_leak(tmp_path):
    token = "hf_" + "B" * 33
    clean = tmp_path / "clean.bin"
    clean.write_bytes(os.urandom(3 << 20).replace(b"hf_", b"xx_"))
    leaky = tmp_path / "leaky.bin"
    leaky.write_bytes(os.urandom(2 << 20) + token.encode() + os.urandom(100))
    _check_no_token(str(tmp_path), {"clean.bin": str(clean)}, token)  # no error
    assert not stream_contains(io.BytesIO(clean.read_bytes()), token.encode(), chunk_size=1000)
    with pytest.raises(TokenLeakError, match="leaky.bin"):
        _check_no_token(str(tmp_path), {"clean.bin": str(clean), "leaky.bin": str(leaky)}, token)
