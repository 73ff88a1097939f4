"""Dataset versions: semver parsing and bumps, Hub targets, and the versions published on the Hub or in a folder.

A version is a tag on the Hub (`X.Y.Z`, or `vX.Y.Z`), or locally an `OUT/X.Y.Z/` folder holding a `manifest.json`
(written last, in the staging folder, before the version moves into place in one rename: a version folder without one
is damaged, and no build replaces it). `OUT/latest` points at the latest version: a relative symlink on a local disk
(so `load_dataset("OUT/latest", "sft")` works), a small text file holding the version on other fsspec filesystems.
"""

from __future__ import annotations

import os
import re

import fsspec

from cotforge.tasks.publish.retry import RetryPolicy, hub_api, with_retries

LATEST = "latest"
MANIFEST = "manifest.json"
SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class VersionExistsError(RuntimeError):
    """The repo already has this version: versions are never moved or overwritten."""


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


def hub_tags(api, repo_id: str, retry: RetryPolicy) -> dict[str, str]:
    refs = with_retries("list refs", lambda: api.list_repo_refs(repo_id, repo_type="dataset"), retry)
    return {t.name: t.target_commit for t in refs.tags}


def cached_hub_tags(repo_id: str) -> list[str]:
    """The refs (version tags, `main`) this machine has in huggingface_hub's cache (for offline pulls), read with
    its public cache scanner."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir(constants.HF_HUB_CACHE)
    except CacheNotFound:
        return []
    return sorted({ref for repo in cache.repos if repo.repo_type == "dataset" and repo.repo_id == repo_id
                   for revision in repo.revisions for ref in revision.refs})


def version_folder(out: str, version: str) -> str:
    return f"{out.rstrip('/')}/{version}"


def local_versions(folder: str) -> list[str]:
    """The complete versions of an output folder (`X.Y.Z/` with a manifest.json), oldest first."""
    fs, root = fsspec.core.url_to_fs(folder)
    if not fs.isdir(root):
        return []
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
    return sorted((n for n in names if SEMVER.match(n) and fs.exists(f"{root}/{n}/{MANIFEST}")), key=parse_semver)


def _is_local(fs) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def read_latest(folder: str) -> str | None:
    """The version `OUT/latest` points at (None without a pointer)."""
    fs, root = fsspec.core.url_to_fs(folder)
    pointer = f"{root}/{LATEST}"
    if _is_local(fs) and os.path.islink(pointer):
        return os.path.basename(os.readlink(pointer).rstrip("/"))
    if fs.isfile(pointer):
        with fs.open(pointer, "r") as f:
            return f.read().strip() or None
    return None


def latest_local_version(folder: str) -> str | None:
    """The version `latest` points at when it is complete, else the highest complete version (None: no version)."""
    versions = local_versions(folder)
    pointer = read_latest(folder)
    return pointer if pointer in versions else (versions[-1] if versions else None)


def set_latest(folder: str, version: str) -> None:
    """Point `OUT/latest` at `version`, atomically (a symlink or text file renamed over the old one)."""
    import uuid

    fs, root = fsspec.core.url_to_fs(folder)
    tmp = f"{root}/.{LATEST}.tmp-{uuid.uuid4().hex}"
    if _is_local(fs):
        os.symlink(version, tmp, target_is_directory=True)
        os.replace(tmp, f"{root}/{LATEST}")
        return
    with fs.open(tmp, "w") as f:
        f.write(version + "\n")
    fs.mv(tmp, f"{root}/{LATEST}")


def previous_version(versions: list[str], version: str) -> str | None:
    """The highest of `versions` below `version` (the one a new `version` carries), or None."""
    older = [v for v in versions if parse_semver(v) < parse_semver(version)]
    return max(older, key=parse_semver) if older else None


def local_build_version(folder: str) -> str | None:
    """The version a single version folder holds (from its manifest or report); None for other folders."""
    import json

    fs, root = fsspec.core.url_to_fs(folder)
    for name in (MANIFEST, "report/report.json"):
        if fs.exists(f"{root}/{name}"):
            with fs.open(f"{root}/{name}", "r") as f:
                return json.load(f).get("version")
    return None


def published_versions(target: str, token: str | None = None, retry: RetryPolicy = RetryPolicy()) -> list[str]:
    """Versions published at `target` (a Hub repo's tags, or a local folder's `X.Y.Z/` subfolders), oldest first."""
    if is_hub_target(target):
        from huggingface_hub.errors import OfflineModeIsEnabled, RepositoryNotFoundError

        repo_id = hub_repo_id(target)
        try:
            names = list(hub_tags(hub_api(token), repo_id, retry))
        except RepositoryNotFoundError:
            names = []
        except OfflineModeIsEnabled:
            names = cached_hub_tags(repo_id)
    else:
        names = local_versions(target)
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
