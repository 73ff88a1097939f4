"""The Hugging Face Hub side of publishing: push a built folder as one commit + a version tag.

A version is a tag. A version folder (`OUT/<version>/`, a complete snapshot) is pushed as ONE commit holding exactly
its files (views, card, report, indexes), and the tag is created last, on that commit: an upload that fails or is
interrupted leaves no tag, so no partial version exists, and re-running the push resumes it (LFS objects already on
the Hub are skipped by the LFS batch API). Tags are never moved or overwritten: pushing a version that already exists
is refused, and so is a version older than the Hub's latest (its commit would move `main`, the latest, back).

Everything goes through the real `huggingface_hub` client, so `HF_ENDPOINT` and `HF_TOKEN` (or `huggingface-cli
login`) work as that library defines them; the same command publishes to the Hub or to a compatible server. Version
listing is in `versions.py`, pulling in `pull.py`, retries in `retry.py`.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import fsspec
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.tasks.publish.card import REPO_PLACEHOLDER
from cotforge.tasks.publish.retry import RetryPolicy, http_status, hub_api, with_retries
from cotforge.tasks.publish.versions import (
    SEMVER,
    VersionExistsError,
    bump_patch,
    hub_repo_id,
    hub_tags,
    parse_semver,
)

log = logging.getLogger("cotforge.hub")
# Files of a build folder that are not part of the published dataset: stage shards and the shard manifest.
PRIVATE_PATHS = ("_work/", "manifest.json")
SCAN_CHUNK = 1 << 20  # bytes read at a time by the token scan


class TokenLeakError(RuntimeError):
    """A file about to be published contains the Hub token."""


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    version: str
    commit: str
    url: str
    files: int
    resumed: bool  # the commit was already on the Hub (an earlier, interrupted push made it); only the tag was added


def _build_files(out: str) -> dict[str, str]:
    """Relative path -> fsspec path of every file of a build folder that belongs to the published dataset."""
    fs, root = fsspec.core.url_to_fs(out)
    files = {}
    for path in fs.find(root):
        relative = path[len(root.rstrip("/")) + 1:] if path.startswith(root.rstrip("/")) else path
        name = relative.rsplit("/", 1)[-1]
        if relative.startswith(PRIVATE_PATHS) or name.startswith(".") or ".tmp" in name:
            continue
        files[relative] = path
    if "README.md" not in files:
        raise FileNotFoundError(f"{out} has no README.md: is it a finished cotforge build folder?")
    return files


def _check_no_token(out: str, files: dict[str, str], token: str | None) -> None:
    if not token or len(token) < 8:
        return
    fs, _ = fsspec.core.url_to_fs(out)
    needle = token.encode()
    for relative, path in files.items():
        with fs.open(path, "rb") as f:
            if stream_contains(f, needle):
                raise TokenLeakError(f"{relative} contains the Hub token; refusing to publish it")


def stream_contains(stream, needle: bytes, chunk_size: int = SCAN_CHUNK) -> bool:
    """Whether a binary stream holds `needle`, read `chunk_size` bytes at a time: the last `len(needle) - 1` bytes
    of each chunk are kept, so a match that straddles two chunks is found, and memory stays one chunk."""
    keep = len(needle) - 1
    tail = b""
    while chunk := stream.read(chunk_size):
        window = tail + chunk
        if needle in window:
            return True
        tail = window[len(window) - keep:] if keep else b""
    return False


def _resolved_token(token: str | None) -> str | None:
    if token:
        return token
    from huggingface_hub import get_token

    return get_token()


def push_folder(out: str, repo_id: str, version: str, *, private: bool = False, token: str | None = None,
                retry: RetryPolicy = RetryPolicy()) -> PushResult:
    """Publish a finished build folder to `repo_id` as version `version` (one commit, then the tag)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    parse_semver(version)
    repo_id = hub_repo_id(repo_id)
    api = hub_api(token)
    files = _build_files(out)
    _check_no_token(out, files, _resolved_token(token))
    fs, _ = fsspec.core.url_to_fs(out)
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))

    url = with_retries("create repo", lambda: api.create_repo(repo_id, repo_type="dataset", private=private,
                                                               exist_ok=True), retry)
    tags = hub_tags(api, repo_id, retry)
    if version in tags or f"v{version}" in tags:
        raise VersionExistsError(
            f"{repo_id} already has version {version} (commit {tags.get(version) or tags.get('v' + version)}); "
            "published versions are never moved or overwritten: build a new version (e.g. "
            f"--version {bump_patch(version)})")
    newer = [t.removeprefix("v") for t in tags if SEMVER.match(t) and parse_semver(t) > parse_semver(version)]
    if newer:
        latest = max(newer, key=parse_semver)
        raise VersionExistsError(f"{repo_id} already has version {latest}, newer than {version}; `main` holds the "
                                 "latest version, so versions are pushed oldest first")
    existing = with_retries("list files", lambda: api.list_repo_files(repo_id, repo_type="dataset"), retry)

    def operations():
        # Fresh operation objects per attempt: huggingface_hub refuses to reuse committed ones.
        ops = [CommitOperationAdd(relative, _card_for(fs, path, repo_id) if relative == "README.md"
                                  else path if local else fs.cat_file(path))
               for relative, path in sorted(files.items())]
        # The commit holds exactly this version, a full snapshot (its index/ covers every earlier version too):
        # files of an earlier version that this one has not are removed.
        ops += [CommitOperationDelete(p) for p in existing if p not in files and p != ".gitattributes"]
        return ops

    head_before = _head(api, repo_id, retry)
    message = f"cotforge: version {version}"
    with lfs_uploads():
        info = with_retries("commit", lambda: api.create_commit(repo_id, operations(), repo_type="dataset",
                                                                commit_message=message,
                                                                commit_description=f"Dataset version {version}."),
                            retry)
    resumed = info.oid == head_before
    with_retries("tag", lambda: _create_tag(api, repo_id, version, info.oid), retry)
    log.info("published %s version %s (commit %s)", repo_id, version, info.oid)
    return PushResult(repo_id, version, info.oid, str(url), len(files), resumed)


_XET_SWITCH = threading.Lock()


@contextmanager
def lfs_uploads():
    """Upload through the LFS protocol even where `hf_xet` is installed (why: README, "Publish to the Hub"): the
    one upload path the test Hub speaks, so the path production takes is the path the tests take."""
    from huggingface_hub import constants

    with _XET_SWITCH:  # one flag for the process: concurrent pushes take turns rather than restore it under another
        saved = constants.HF_HUB_DISABLE_XET
        constants.HF_HUB_DISABLE_XET = True
        try:
            yield
        finally:
            constants.HF_HUB_DISABLE_XET = saved


def _card_for(fs, path: str, repo_id: str) -> bytes:
    """The card with the repo id filled into its load instructions."""
    return fs.cat_file(path).decode().replace(REPO_PLACEHOLDER, repo_id).encode()


def _create_tag(api, repo_id: str, version: str, commit: str) -> None:
    from huggingface_hub.errors import HfHubHTTPError

    try:
        api.create_tag(repo_id, tag=version, revision=commit, repo_type="dataset",
                       tag_message=f"cotforge dataset version {version}")
    except HfHubHTTPError as error:
        # A retried tag request whose first attempt went through: fine if the tag is on our commit.
        if http_status(error) == 409 and hub_tags(api, repo_id, RetryPolicy(retries=2)).get(version) == commit:
            return
        raise


def _head(api, repo_id: str, retry: RetryPolicy) -> str | None:
    refs = with_retries("list refs", lambda: api.list_repo_refs(repo_id, repo_type="dataset"), retry)
    return next((b.target_commit for b in refs.branches if b.name == "main"), None)


def push_versions(out: str, repo: str, version: str | None = None, *, private: bool = False,
                  token: str | None = None, retry: RetryPolicy = RetryPolicy()) -> list[PushResult]:
    """Publish finished local versions without rebuilding (`cotforge push`): `version`, or else every version of
    `out` newer than the Hub's latest, oldest first. Each must pass `check_version` against its manifest first."""
    from cotforge.tasks.publish.manifest import CorruptVersionError, check_version
    from cotforge.tasks.publish.versions import local_build_version, local_versions, published_versions, version_folder

    fs, root = fsspec.core.url_to_fs(out)
    single = local_build_version(out) if fs.exists(f"{root}/manifest.json") else None  # OUT/<version> itself
    folders = {single: out} if single else {v: version_folder(out, v) for v in local_versions(out)}
    if not folders:
        raise FileNotFoundError(f"{out} has no finished version (no X.Y.Z/manifest.json)")
    if version is not None:
        version = version.removeprefix("v")
        if version not in folders:
            raise FileNotFoundError(f"{out} has no version {version}; it has {', '.join(folders)}")
        wanted = [version]
    else:
        on_hub = published_versions(repo, token, retry)  # a repo not created yet has none
        latest = on_hub[-1] if on_hub else None
        wanted = [v for v in sorted(folders, key=parse_semver)
                  if latest is None or parse_semver(v) > parse_semver(latest)]
    results = []
    for v in wanted:
        problems = check_version(folders[v], v)
        if problems:
            raise CorruptVersionError(f"{folders[v]} does not match its manifest, not pushed: " + "; ".join(problems))
        results.append(push_folder(folders[v], repo, v, private=private, token=token, retry=retry))
    return results


@task(name="push-to-hub", cache_policy=NO_CACHE)
def push_build(out: str, repo_id: str, version: str, private: bool = False,
               retry: RetryPolicy = RetryPolicy()) -> PushResult:
    """Prefect task around `push_folder` (the token is read from the environment, never passed as a parameter)."""
    return push_folder(out, repo_id, version, private=private, retry=retry)
