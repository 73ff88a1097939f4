"""A version's manifest (`OUT/<version>/manifest.json`, written last) and the integrity check against it.

The manifest lists every file of the version with its SHA-256 and size, and every view with its schema version, its
rows (new in this version, carried from the previous one), its Parquet files and a digest of its rows. `check_output`
(`cotforge check OUT`) verifies each version against it: missing, changed, truncated and unexpected files, row counts
and schema versions read back from the Parquet footers, and the `latest` pointer; it names every problem it finds.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import fsspec
import pyarrow.parquet as pq

from cotforge.schemas.views import VIEWS, SchemaMismatch, parse_version
from cotforge.tasks.publish.versions import MANIFEST, SEMVER, local_versions, parse_semver, read_latest
from cotforge.tasks.publish.write import PublishedView, dumps_json, file_sha256

MANIFEST_FORMAT = 1


class CorruptVersionError(RuntimeError):
    """A version folder that does not match its manifest."""


def version_files(folder: str) -> dict[str, str]:
    """Relative path -> fsspec path of every file of a version folder but the manifest, hidden files included (a
    version holds exactly the files its manifest lists)."""
    fs, root = fsspec.core.url_to_fs(folder)
    root = root.rstrip("/")
    return {path[len(root) + 1:]: path for path in fs.find(root, withdirs=False)
            if path[len(root) + 1:] not in (MANIFEST, f"{MANIFEST}.tmp")}


def damaged_versions(out: str) -> list[str]:
    """The `X.Y.Z/` folders of an output folder that have no manifest: damaged versions (a build moves a version into
    place with its manifest, in one rename), never a version to rebuild over."""
    fs, root = fsspec.core.url_to_fs(out)
    if not fs.isdir(root):
        return []
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
    return sorted((n for n in names if SEMVER.match(n) and fs.isdir(f"{root}/{n}")
                   and not fs.exists(f"{root}/{n}/{MANIFEST}")), key=parse_semver)


DAMAGED = (f"{MANIFEST}: missing, so nothing says what this version holds: a damaged version (a build never leaves "
           f"one; restore its {MANIFEST}, or move the folder out if it is not a version)")


def write_manifest(folder: str, version: str, views: list[PublishedView], lineage: dict, previous: str | None,
                   stages: dict) -> dict:
    """Checksum every file of the version folder and write `manifest.json` (last: it marks the version complete)."""
    fs, root = fsspec.core.url_to_fs(folder)
    files = {}
    for relative, path in sorted(version_files(folder).items()):
        digest, size = file_sha256(fs, path)
        files[relative] = {"sha256": digest, "bytes": size}
    manifest = {"format": MANIFEST_FORMAT, "version": version, "previous": previous, **lineage,
                "views": {v.name: {k: val for k, val in asdict(v).items() if k != "name"} for v in views},
                "files": files, "stages": stages}
    tmp = f"{root}/{MANIFEST}.tmp"
    with fs.open(tmp, "w") as f:
        f.write(dumps_json(manifest))
    fs.mv(tmp, f"{root}/{MANIFEST}")
    return manifest


def read_manifest(folder: str) -> dict:
    fs, root = fsspec.core.url_to_fs(folder)
    with fs.open(f"{root}/{MANIFEST}", "r") as f:
        return json.load(f)


def check_version(folder: str, version: str | None = None) -> list[str]:
    """Every way the version folder differs from its manifest (empty: intact)."""
    fs, _ = fsspec.core.url_to_fs(folder)
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError) as error:
        return [f"{MANIFEST}: unreadable ({error})"]
    problems = []
    if version is not None and manifest.get("version") != version:
        problems.append(f"{MANIFEST} says version {manifest.get('version')!r}, the folder is {version}")
    present = version_files(folder)
    for relative, expected in manifest.get("files", {}).items():
        if relative not in present:
            problems.append(f"{relative}: missing")
            continue
        digest, size = file_sha256(fs, present[relative])
        if size != expected["bytes"]:
            problems.append(f"{relative}: {size} bytes, the manifest says {expected['bytes']} (truncated or "
                            "rewritten)")
        elif digest != expected["sha256"]:
            problems.append(f"{relative}: checksum differs from the manifest (corrupted or edited)")
    problems += [f"{relative}: not in the manifest (added after the version was published)"
                 for relative in sorted(set(present) - set(manifest.get("files", {})))]
    for view, info in manifest.get("views", {}).items():
        problems += _check_view(fs, present, view, info, manifest.get("version"))
    return problems


def _check_view(fs, present: dict[str, str], view: str, info: dict, version: str | None) -> list[str]:
    """Row counts and schema stamps of a view's Parquet files, read back from their footers."""
    problems, rows, complete = [], 0, True
    if info.get("rows") != info.get("new_rows", 0) + info.get("carried_rows", 0):
        problems.append(f"{view}: the manifest's rows ({info.get('rows')}) are not new + carried rows")
    for relative in info.get("files", []):
        if relative not in present:
            complete = False  # already named as missing
            continue
        try:
            with fs.open(present[relative], "rb") as f:
                footer = pq.ParquetFile(f).metadata
        except (OSError, ValueError) as error:  # a truncated or corrupted footer (ArrowInvalid is a ValueError)
            problems.append(f"{relative}: not a readable Parquet file ({type(error).__name__}: {error})")
            complete = False
            continue
        rows += footer.num_rows
        meta = {k.decode(): v.decode() for k, v in (footer.metadata or {}).items()}
        if meta.get("cotforge.schema_name") != view or meta.get("cotforge.schema_version") != info["schema_version"]:
            problems.append(f"{relative}: stamped {meta.get('cotforge.schema_name')} "
                            f"{meta.get('cotforge.schema_version')}, the manifest says {view} {info['schema_version']}")
        if version and meta.get("cotforge.dataset_version") != version:
            problems.append(f"{relative}: stamped dataset version {meta.get('cotforge.dataset_version')}")
    if complete and rows != info.get("rows"):
        problems.append(f"{view}: {rows} rows in its files, the manifest says {info.get('rows')}")
    try:
        major = parse_version(info["schema_version"])[0]
        if view in VIEWS and major != VIEWS[view].major:
            problems.append(f"{view}: schema {info['schema_version']} is major {major}; this cotforge reads major "
                            f"{VIEWS[view].major}")
    except (SchemaMismatch, KeyError) as error:
        problems.append(f"{view}: bad schema version in the manifest ({error})")
    return problems


@dataclass
class CheckReport:
    """The integrity of an output folder: problems per version, problems of the folder, and notes."""

    versions: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not any(self.versions.values())


def check_output(out: str) -> CheckReport:
    """Check every version of an output folder (or the one version folder `out` is) against its manifest, and the
    `latest` pointer. A version folder without a manifest is damaged (a build never leaves one): a problem."""
    fs, root = fsspec.core.url_to_fs(out)
    report = CheckReport()
    name = root.rstrip("/").rsplit("/", 1)[-1]
    if fs.exists(f"{root}/{MANIFEST}"):
        report.versions[name] = check_version(out, name if SEMVER.match(name) else None)
        return report
    if not fs.isdir(root):
        report.problems.append(f"{out}: no such folder")
        return report
    if SEMVER.match(name):  # a version folder itself, without its manifest
        report.versions[name] = [DAMAGED]
        return report
    versions = local_versions(out)
    for damaged in damaged_versions(out):
        report.versions[damaged] = [DAMAGED]
    for version in versions:
        report.versions[version] = check_version(f"{out.rstrip('/')}/{version}", version)
    if not versions:
        report.problems.append(f"{out}: no complete version (no X.Y.Z/{MANIFEST})")
        return report
    pointer = read_latest(out)
    newest = max(versions, key=parse_semver)
    if pointer is None:
        report.problems.append(f"latest: missing (the latest version is {newest})")
    elif pointer != newest:
        report.problems.append(f"latest: points at {pointer!r}, the latest complete version is {newest}")
    return report
