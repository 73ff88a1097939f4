"""Versions as complete, immutable snapshots: version N+1 = N's rows (carried, never regenerated) + the new rows.

A build writes its version into a staging folder (`OUT/_work/publish/<version>/`): the carried rows of the previous
version, the new rows, the card, the report, the indexes of every version so far, and last the manifest. Then
`finalize_version` either moves it into place as `OUT/<version>/` and points `OUT/latest` at the newest version, or,
when `OUT/<version>/` is already published, compares: the same rows are nothing to do, other rows are refused (a
published version never changes). The previous version can be a local version folder or a Hub tag
(`hf://datasets/<repo>@<version>`).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator

import fsspec
import pyarrow as pa

from cotforge.schemas.views import VIEWS
from cotforge.tasks.publish.manifest import CorruptVersionError, damaged_versions, read_manifest
from cotforge.tasks.publish.versions import (
    VersionExistsError,
    bump_patch,
    latest_local_version,
    local_versions,
    parse_semver,
    previous_version,
    published_versions,
    set_latest,
    version_folder,
)
from cotforge.tasks.publish.write import read_view_files, read_view_format


def previous_location(out: str, version: str, hub_versions: dict[str, str] | None = None) -> str | None:
    """Where the version before `version` lives: the highest local version below it, or a Hub tag when the Hub
    (`hub_versions`: version -> `hf://datasets/<repo>@<tag>`) has a higher one (a fresh machine, a Hub target)."""
    local = previous_version(local_versions(out), version)
    hub = previous_version(list(hub_versions or {}), version)
    if hub is not None and (local is None or parse_semver(hub) > parse_semver(local)):
        return hub_versions[hub]
    return version_folder(out, local) if local is not None else None


def open_version(location: str) -> str:
    """A readable folder for a version location: a local or fsspec folder as it is; a Hub tag downloaded (views,
    card and indexes) through huggingface_hub's cache."""
    if not location.startswith("hf://"):
        return location
    from huggingface_hub import snapshot_download

    repo, _, revision = location.removeprefix("hf://datasets/").removeprefix("hf://").partition("@")
    return snapshot_download(repo_id=repo, repo_type="dataset", revision=revision or None,
                             allow_patterns=["README.md", "*/*.parquet", "index/*/*.parquet"])


def version_views(folder: str) -> list[str]:
    """The views of a published version: its manifest's, or the configs its card declares (a Hub snapshot)."""
    fs, root = fsspec.core.url_to_fs(folder)
    if fs.exists(f"{root}/manifest.json"):
        return list(read_manifest(folder)["views"])
    with fs.open(f"{root}/README.md", "r") as f:
        text = f.read()
    header = text.split("---")[1] if text.startswith("---") else ""
    return re.findall(r"config_name:\s*(\S+)", header)


def carried_view(folder: str, view: str, format_: str | None = None) -> tuple[pa.Table, str]:
    """One view of a published version, read back schema-checked and migrated to the current schema, with
    `added_in` as each row was first published, and its TRL format: `format_` when given (rows converted), else the
    one it was written in."""
    frame, format_ = read_view_format(folder, view, format_)
    return frame.to_arrow().cast(VIEWS[view].arrow_for(format_)), format_


def carried_view_files(folder: str, view: str, format_: str | None = None) -> Iterator[tuple[pa.Table, str]]:
    """`carried_view` file by file: a version's view is carried without being in memory whole."""
    for frame, format_ in read_view_files(folder, view, format_):
        yield frame.to_arrow().cast(VIEWS[view].arrow_for(format_)), format_


def carried_views(folder: str, formats: dict[str, str] | None = None) -> dict[str, tuple[pa.Table, str]]:
    """Every view of a published version (`carried_view` of each)."""
    return {view: carried_view(folder, view, (formats or {}).get(view)) for view in version_views(folder)}


def copy_indexes(source: str, folder: str, version: str) -> list[str]:
    """Copy the MinHash indexes of every earlier version (`index/<v>/`) into the version being written, so each
    version holds the index of all its rows; returns the copied paths."""
    src_fs, src_root = fsspec.core.url_to_fs(source)
    fs, root = fsspec.core.url_to_fs(folder)
    copied = []
    for path in sorted(src_fs.glob(f"{src_root}/index/*/*.parquet")):
        relative = "/".join(path.rsplit("/", 3)[-3:])
        if relative.split("/")[1] == version:
            continue
        fs.makedirs(f"{root}/{relative.rsplit('/', 1)[0]}", exist_ok=True)
        with src_fs.open(path, "rb") as f, fs.open(f"{root}/{relative}", "wb") as g:
            shutil.copyfileobj(f, g, 1 << 20)  # in blocks: every earlier version's index need not fit in memory
        copied.append(relative)
    return copied


def staging_folder(out: str, version: str) -> str:
    """An empty folder to write a version into before it is moved into place."""
    fs, root = fsspec.core.url_to_fs(out)
    path = f"{root}/_work/publish/{version}"
    if fs.exists(path):
        fs.rm(path, recursive=True)
    fs.makedirs(path, exist_ok=True)
    return f"{out.rstrip('/')}/_work/publish/{version}"


def _content(manifest: dict) -> dict[str, tuple]:
    return {name: (v["schema_version"], v["rows"], v["rows_sha256"]) for name, v in manifest["views"].items()}


def finalize_version(out: str, version: str, staging: str, manifest: dict) -> str:
    """Publish the staged version: "published" (moved into place, `latest` updated) or "unchanged" (the version was
    already published with the same rows: nothing is touched). Other rows than the published ones are refused."""
    fs, root = fsspec.core.url_to_fs(out)
    final = version_folder(root, version)
    if version in local_versions(out):
        existing = _content(read_manifest(version_folder(out, version)))
        built = _content(manifest)
        fs.rm(fsspec.core.url_to_fs(staging)[1], recursive=True)
        if existing == built:
            return "unchanged"
        differs = [f"{name}: published {existing[name][1] if name in existing else 'no'} rows, this build "
                   f"{built[name][1] if name in built else 'no'} rows"
                   + (" (same count, other rows)" if name in existing and name in built
                      and existing[name][1] == built[name][1] else "")
                   for name in sorted(set(existing) | set(built)) if existing.get(name) != built.get(name)]
        newest = latest_local_version(out) or version
        raise VersionExistsError(
            f"{out} already has version {version} with other content ({'; '.join(differs)}); a published version "
            f"is never changed: build a new version (e.g. --version {bump_patch(newest)})")
    if fs.exists(final):  # a version folder without a manifest is damaged: never replaced (plan_version refuses it)
        fs.rm(fsspec.core.url_to_fs(staging)[1], recursive=True)
        raise CorruptVersionError(_damaged_message(out, [version]))
    fs.mv(fsspec.core.url_to_fs(staging)[1], final, recursive=True)
    set_latest(out, local_versions(out)[-1])  # oldest first: the newest version
    return "published"


def check_new_version(out: str, version: str, hub_versions: list[str] | None = None) -> None:
    """Refuse, before any work, a new version below the latest one: version N+1 carries N, so versions only grow.
    (Building a version that exists is allowed: the same rows are nothing to do, others are refused at publish.)"""
    parse_semver(version)
    known = set(local_versions(out)) | set(hub_versions or [])
    newer = [v for v in known if parse_semver(v) > parse_semver(version)]
    if version not in known and newer:
        latest = max(newer, key=parse_semver)
        raise VersionExistsError(f"version {latest} is already published, newer than {version}; a new version carries "
                                 f"the latest one, so it must be newer (e.g. --version {bump_patch(latest)})")


def _damaged_message(out: str, versions: list[str]) -> str:
    return (f"{out} has a damaged version ({', '.join(f'{v}/' for v in versions)}: a version folder without its "
            "manifest.json); nothing is built over it: restore its manifest.json, or move the folder out of the "
            f"output folder if it is not a version (`cotforge check {out}` lists what is wrong)")


def plan_version(out: str, version: str | None, hub_repo: str | None = None,
                 previous: str | None = None) -> tuple[str, str | None]:
    """(version to build, location of the version it carries). The version: as given; else the next version of the
    Hub repo when pushing; else the latest local version (a re-run resumes it, or finds nothing to do), else 0.1.0.
    The previous version: as given, else the highest version below it, locally or on the Hub. An output folder with a
    damaged version (an `X.Y.Z/` folder without manifest) is refused: its rows are unknown."""
    damaged = damaged_versions(out)
    if damaged:  # its rows are unknown: no version may replace it or be built as if it were not there
        raise CorruptVersionError(_damaged_message(out, damaged))
    hub = {v: f"hf://datasets/{hub_repo}@{v}" for v in published_versions(hub_repo)} if hub_repo else {}
    if version is None:
        version = bump_patch(max(hub, key=parse_semver)) if hub else latest_local_version(out) or "0.1.0"
    check_new_version(out, version, list(hub))
    if version in hub and version not in local_versions(out):
        raise VersionExistsError(f"{hub_repo} already has version {version} and {out} has not: a build would publish "
                                 f"other rows under it; build a new version (e.g. --version "
                                 f"{bump_patch(max(hub, key=parse_semver))}) or pull {version}")
    return version, previous if previous is not None else previous_location(out, version, hub)
