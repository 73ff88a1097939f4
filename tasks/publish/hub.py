"""The Hugging Face Hub side of publishing: push a built folder as one commit + a version tag, pull a view back.

A version is a tag. A build is pushed as ONE commit holding every view, the card and the report, and the tag is
created last, on that commit: an upload that fails or is interrupted leaves no tag, so no partial version exists, and
re-running the push resumes it (LFS objects already on the Hub are skipped by the LFS batch API). Tags are never moved
or overwritten: pushing a version that already exists is refused.

Everything goes through the real `huggingface_hub` client, so `HF_ENDPOINT` and `HF_TOKEN` (or `huggingface-cli
login`) work as that library defines them; the same command publishes to the Hub or to a compatible server. Pulls go
through huggingface_hub's cache (`snapshot_download`), so a pulled version can be read again offline
(`HF_HUB_OFFLINE=1`). Polars' `hf://` reader is not used: it ignores `HF_ENDPOINT`.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TypeVar

import fsspec
import polars as pl
from prefect import task
from prefect.cache_policies import NO_CACHE

from cotforge.tasks.publish.write import REPO_PLACEHOLDER, read_view

log = logging.getLogger("cotforge.hub")
T = TypeVar("T")

SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
RETRY_STATUSES = (429, 500, 502, 503, 504, 507)
# Files of a build folder that are not part of the published dataset: stage shards and the shard manifest.
PRIVATE_PATHS = ("_work/", "manifest.json")


class VersionExistsError(RuntimeError):
    """The repo already has this version: versions are never moved or overwritten."""


class TokenLeakError(RuntimeError):
    """A file about to be published contains the Hub token."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retries with exponential backoff (and jitter) on 429 / 5xx answers and network errors."""

    retries: int = 5
    base_wait: float = 1.0
    max_wait: float = 30.0


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    version: str
    commit: str
    url: str
    files: int
    resumed: bool  # the commit was already on the Hub (an earlier, interrupted push made it); only the tag was added


def parse_semver(version: str) -> tuple[int, int, int]:
    match = SEMVER.match(str(version))
    if not match:
        raise ValueError(f"version {version!r} is not MAJOR.MINOR.PATCH (e.g. 0.1.0)")
    return int(match[1]), int(match[2]), int(match[3])


def bump_patch(version: str) -> str:
    major, minor, patch = parse_semver(version)
    return f"{major}.{minor}.{patch + 1}"


def is_hub_target(target: str) -> bool:
    """`org/name` or `hf://datasets/org/name` that is not an existing local path."""
    if target.startswith("hf://"):
        return True
    if "://" in target or os.path.exists(target) or target.startswith((".", "/", "~")):
        return False
    return bool(REPO_ID.match(target))


def hub_repo_id(target: str) -> str:
    repo = target.removeprefix("hf://").removeprefix("datasets/").split("@", 1)[0].strip("/")
    if not REPO_ID.match(repo):
        raise ValueError(f"{target!r} is not a Hub dataset id ORG/NAME")
    return repo


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def _retryable(error: BaseException) -> bool:
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(error, OfflineModeIsEnabled):
        return False
    status = _status(error)
    if status is not None:
        return status in RETRY_STATUSES
    # Network-level failures (connection reset, timeout) from httpx/httpx2, wrapped or not.
    names = {type(e).__name__ for e in _chain(error)}
    return bool(names & {"TransportError", "NetworkError", "ConnectError", "ReadError", "WriteError",
                         "RemoteProtocolError", "TimeoutException", "ReadTimeout", "ConnectTimeout",
                         "ConnectionError", "ConnectionResetError"})


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        for base in type(error).__mro__:
            yield base
        error = error.__cause__ or error.__context__


def with_retries(what: str, fn: Callable[[], T], policy: RetryPolicy) -> T:
    """Call `fn`, retrying on 429 / 5xx / network errors with exponential backoff; honour `Retry-After`."""
    for attempt in range(policy.retries + 1):
        try:
            return fn()
        except Exception as error:  # noqa: BLE001 - classified just below
            if attempt >= policy.retries or not _retryable(error):
                raise
            wait = min(policy.max_wait, policy.base_wait * 2 ** attempt) * (0.5 + random.random() / 2)
            retry_after = getattr(getattr(error, "response", None), "headers", {}).get("Retry-After")
            if retry_after and str(retry_after).isdigit():
                wait = min(policy.max_wait, float(retry_after))
            status = _status(error)
            log.warning("%s failed (%s); retry %d/%d in %.1fs", what,
                        f"HTTP {status}" if status else type(error).__name__, attempt + 1, policy.retries, wait)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _api(token: str | None = None):
    from huggingface_hub import HfApi

    return HfApi(token=token)  # None: HF_TOKEN, then the huggingface_hub login


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
            if needle in f.read():
                raise TokenLeakError(f"{relative} contains the Hub token; refusing to publish it")


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
    api = _api(token)
    files = _build_files(out)
    _check_no_token(out, files, _resolved_token(token))
    fs, _ = fsspec.core.url_to_fs(out)
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))

    url = with_retries("create repo", lambda: api.create_repo(repo_id, repo_type="dataset", private=private,
                                                               exist_ok=True), retry)
    tags = _tags(api, repo_id, retry)
    if version in tags or f"v{version}" in tags:
        raise VersionExistsError(
            f"{repo_id} already has version {version} (commit {tags.get(version) or tags.get('v' + version)}); "
            "published versions are never moved or overwritten: build a new version (e.g. "
            f"--version {bump_patch(version)})")
    existing = with_retries("list files", lambda: api.list_repo_files(repo_id, repo_type="dataset"), retry)

    def operations():
        # Fresh operation objects per attempt: huggingface_hub refuses to reuse committed ones.
        ops = [CommitOperationAdd(relative, _card_for(fs, path, repo_id) if relative == "README.md"
                                  else path if local else fs.cat_file(path))
               for relative, path in sorted(files.items())]
        # The commit holds exactly this version: files of an earlier version that this build has not are removed.
        # Earlier versions' dedup indexes (index/<version>/) stay, so the latest tag carries all of them.
        ops += [CommitOperationDelete(p) for p in existing
                if p not in files and p != ".gitattributes" and not p.startswith("index/")]
        return ops

    head_before = _head(api, repo_id, retry)
    message = f"cotforge: version {version}"
    info = with_retries("commit", lambda: api.create_commit(repo_id, operations(), repo_type="dataset",
                                                            commit_message=message,
                                                            commit_description=f"Dataset version {version}."),
                        retry)
    resumed = info.oid == head_before
    with_retries("tag", lambda: _create_tag(api, repo_id, version, info.oid), retry)
    log.info("published %s version %s (commit %s)", repo_id, version, info.oid)
    return PushResult(repo_id, version, info.oid, str(url), len(files), resumed)


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
        if _status(error) == 409 and _tags(api, repo_id, RetryPolicy(retries=2)).get(version) == commit:
            return
        raise


def _head(api, repo_id: str, retry: RetryPolicy) -> str | None:
    refs = with_retries("list refs", lambda: api.list_repo_refs(repo_id, repo_type="dataset"), retry)
    return next((b.target_commit for b in refs.branches if b.name == "main"), None)


def _tags(api, repo_id: str, retry: RetryPolicy) -> dict[str, str]:
    refs = with_retries("list refs", lambda: api.list_repo_refs(repo_id, repo_type="dataset"), retry)
    return {t.name: t.target_commit for t in refs.tags}


@task(name="push-to-hub", cache_policy=NO_CACHE)
def push_build(out: str, repo_id: str, version: str, private: bool = False,
               retry: RetryPolicy = RetryPolicy()) -> PushResult:
    """Prefect task around `push_folder` (the token is read from the environment, never passed as a parameter)."""
    return push_folder(out, repo_id, version, private=private, retry=retry)


# ---- versions -------------------------------------------------------------------------------------------------------
def _cached_tags(repo_id: str) -> list[str]:
    """Version tags this machine has in huggingface_hub's cache (for offline pulls)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    refs = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type="dataset") / "refs"
    return [p.name for p in refs.iterdir() if p.is_file()] if refs.is_dir() else []


def _local_versions(folder: str) -> list[str]:
    fs, root = fsspec.core.url_to_fs(folder)
    if not fs.exists(root):
        return []
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
    return [n for n in names if SEMVER.match(n) and fs.exists(f"{root}/{n}/README.md")]


def published_versions(target: str, token: str | None = None, retry: RetryPolicy = RetryPolicy()) -> list[str]:
    """Versions published at `target` (a Hub repo's tags, or a local folder's `X.Y.Z/` subfolders), oldest first."""
    if is_hub_target(target):
        from huggingface_hub.errors import OfflineModeIsEnabled, RepositoryNotFoundError

        repo_id = hub_repo_id(target)
        try:
            names = list(_tags(_api(token), repo_id, retry))
        except RepositoryNotFoundError:
            names = []
        except OfflineModeIsEnabled:
            names = _cached_tags(repo_id)
    else:
        names = _local_versions(target)
    return sorted((n.removeprefix("v") for n in names if SEMVER.match(n)), key=parse_semver)


def next_version(target: str, first: str = "0.1.0", token: str | None = None) -> str:
    """The version a new build of `target` gets: a patch bump of the latest, or `first`."""
    versions = published_versions(target, token)
    return bump_patch(versions[-1]) if versions else first


def version_locations(target: str, versions: list[str]) -> list[str]:
    """Where earlier versions can be read by the dedup stage: `hf://datasets/<repo>@<tag>` or local folders."""
    if is_hub_target(target):
        return [f"hf://datasets/{hub_repo_id(target)}@{v}" for v in versions]
    return [f"{target.rstrip('/')}/{v}" for v in versions]


# ---- pull -----------------------------------------------------------------------------------------------------------
def _resolve_tag(repo_id: str, version: str | None, token: str | None) -> str:
    from huggingface_hub import constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        if constants.HF_HUB_OFFLINE:
            raise OfflineModeIsEnabled("offline")
        tags = list(_tags(_api(token), repo_id, RetryPolicy(retries=3, base_wait=0.5)))
    except OfflineModeIsEnabled:
        tags = _cached_tags(repo_id)
        if not tags:
            raise FileNotFoundError(f"{repo_id}: offline (HF_HUB_OFFLINE=1) and no version of it is cached; pull it "
                                    "once online first") from None
    versions = sorted((t for t in tags if SEMVER.match(t)), key=parse_semver)
    if not versions:
        raise FileNotFoundError(f"{repo_id} has no published version (no X.Y.Z tag)")
    if version is None:
        return versions[-1]
    parse_semver(version)
    for candidate in (version, f"v{version}", version.removeprefix("v")):
        if candidate in versions:
            return candidate
    raise FileNotFoundError(f"{repo_id} has no version {version}; it has {', '.join(versions)}")


def pull_hub_view(repo: str, config: str, version: str | None = None, token: str | None = None) -> pl.DataFrame:
    """Download one view of a published version through huggingface_hub's cache; schema-checked and migrated."""
    from huggingface_hub import snapshot_download

    repo_id = hub_repo_id(repo)
    tag = _resolve_tag(repo_id, version, token)
    folder = snapshot_download(repo_id, repo_type="dataset", revision=tag, token=token,
                               allow_patterns=[f"{config}/*.parquet", "README.md"])
    if not list(Path(folder, config).glob("*.parquet")):
        configs = re.findall(r"config_name:\s*(\S+)", Path(folder, "README.md").read_text()) \
            if Path(folder, "README.md").is_file() else []
        raise FileNotFoundError(f"{repo_id}@{tag} has no view {config!r}; it has {configs}")
    return read_view(folder, config)


def cotforge_pull(source: str, config: str, version: str | None = None, token: str | None = None) -> pl.DataFrame:
    """A published view as a Polars frame, from a Hub repo (`org/name`, latest version unless `version`) or a local
    build folder; the schema is checked and older schema versions migrated."""
    if is_hub_target(source):
        return pull_hub_view(source, config, version, token)
    if version is not None:
        parse_semver(version)
        fs, root = fsspec.core.url_to_fs(source)
        if fs.exists(f"{root}/{version}/README.md"):
            return read_view(f"{source.rstrip('/')}/{version}", config)
        built = _local_build_version(source)
        if built != version:
            raise FileNotFoundError(f"{source} has no version {version} (versions there: "
                                    f"{_local_versions(source) or built or 'none'})")
    elif _local_versions(source) and not _local_build_version(source):
        return read_view(f"{source.rstrip('/')}/{_local_versions(source)[-1]}", config)  # latest version folder
    return read_view(source, config)


def _local_build_version(folder: str) -> str | None:
    import json

    fs, root = fsspec.core.url_to_fs(folder)
    for name in ("report/report.json", "manifest.json"):
        if fs.exists(f"{root}/{name}"):
            with fs.open(f"{root}/{name}", "r") as f:
                return json.load(f).get("version")
    return None


def retry_policy(publish) -> RetryPolicy:
    """The retry policy of a recipe's `publish` section."""
    return RetryPolicy(retries=publish.retries, base_wait=publish.backoff_seconds)
