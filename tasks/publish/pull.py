"""Pulling a published view back as a Polars frame, from a Hub repo (a version tag) or a local build folder.

Hub pulls go through huggingface_hub's cache (`snapshot_download`), so a pulled version can be read again offline
(`HF_HUB_OFFLINE=1`); `HF_ENDPOINT` and `HF_TOKEN` work as that library defines them. Polars' `hf://` reader is not
used: it ignores `HF_ENDPOINT`.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from cotforge.tasks.publish.retry import RetryPolicy, hub_api
from cotforge.tasks.publish.versions import (
    SEMVER,
    cached_hub_tags,
    hub_repo_id,
    hub_tags,
    is_hub_target,
    latest_local_version,
    local_build_version,
    local_versions,
    parse_semver,
    version_folder,
)
from cotforge.tasks.publish.write import read_view


def _resolve_tag(repo_id: str, version: str | None, token: str | None) -> str:
    from huggingface_hub import constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    try:
        if constants.HF_HUB_OFFLINE:
            raise OfflineModeIsEnabled("offline")
        tags = list(hub_tags(hub_api(token), repo_id, RetryPolicy(retries=3, base_wait=0.5)))
    except OfflineModeIsEnabled:
        tags = cached_hub_tags(repo_id)
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
    """A published view as a Polars frame, from a Hub repo (`org/name`, latest version unless `version`), a local
    output folder (`OUT/<version>/`, the `latest` one unless `version`) or one version folder (`OUT/0.1.0`,
    `OUT/latest`); the schema is checked and older schema versions migrated."""
    if is_hub_target(source):
        return pull_hub_view(source, config, version, token)
    if version is not None:
        parse_semver(version)
    built = local_build_version(source)
    if built is not None:  # a version folder itself
        if version is not None and built != version.removeprefix("v"):
            raise FileNotFoundError(f"{source} holds version {built}, not {version}")
        return read_view(source, config)
    versions = local_versions(source)
    if not versions:
        raise FileNotFoundError(f"{source} has no published version (no X.Y.Z/manifest.json): is it a cotforge "
                                "output folder whose build finished?")
    if version is None:
        version = latest_local_version(source)
    elif version.removeprefix("v") not in versions:
        raise FileNotFoundError(f"{source} has no version {version}; it has {', '.join(versions)}")
    return read_view(version_folder(source, version.removeprefix("v")), config)
