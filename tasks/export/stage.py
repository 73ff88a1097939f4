"""Writing an export: read a published version through its manifest, run a trainer's exporter, write the files into
a folder outside every version folder (a published version is never changed), with `export.json` naming the source.

The default destination is `OUT/_exports/<version>/<trainer>/`. The files are written into a temporary folder beside
it and renamed into place, so a destination holds one whole export or none; exporting again replaces it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from cotforge.schemas.config_verify import VerifyConfig
from cotforge.tasks.export.axolotl import export_axolotl
from cotforge.tasks.export.bundle import Export, jsonl
from cotforge.tasks.export.llamafactory import export_llamafactory
from cotforge.tasks.export.openrlhf import export_openrlhf
from cotforge.tasks.export.verl import export_verl
from cotforge.tasks.publish.manifest import CorruptVersionError, check_version, read_manifest
from cotforge.tasks.publish.versions import (
    latest_local_version,
    local_build_version,
    local_versions,
    parse_semver,
    version_folder,
)
from cotforge.tasks.publish.write import read_view

EXPORTERS = {"verl": export_verl, "llamafactory": export_llamafactory, "axolotl": export_axolotl,
             "openrlhf": export_openrlhf}
EXPORTS_FOLDER = "_exports"
CHAT_VIEWS = ("sft", "preference", "unpaired", "rlvr")  # read as conversational rows (messages)
VIEWS_READ = (*CHAT_VIEWS, "prm")


@dataclass
class ExportResult:
    """What `export_version` wrote: where, from which version, rows per file, and the commands to train."""

    trainer: str
    version: str
    source: str
    dest: str
    files: dict[str, int | None] = field(default_factory=dict)  # file name -> rows (None: a text file)
    views: dict[str, str] = field(default_factory=dict)  # file name -> the view its rows come from
    commands: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def resolve_source(out: str, version: str | None) -> tuple[str, str, str]:
    """(output folder, version folder, version) of a local output folder or one of its version folders."""
    built = local_build_version(out)
    if built is not None and os.path.isfile(os.path.join(out, "manifest.json")):
        if version is not None and version.removeprefix("v") != built:
            raise FileNotFoundError(f"{out} holds version {built}, not {version}")
        return os.path.dirname(os.path.abspath(out)), out, built
    versions = local_versions(out)
    if not versions:
        raise FileNotFoundError(f"{out} has no published version (no X.Y.Z/manifest.json)")
    if version is None:
        version = latest_local_version(out)
    else:
        parse_semver(version)
        version = version.removeprefix("v")
        if version not in versions:
            raise FileNotFoundError(f"{out} has no version {version}; it has {', '.join(versions)}")
    return out, version_folder(out, version), version


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_dest(dest: str, out: str, source: str) -> None:
    """Refuse a destination inside a version folder (the source's or any other version of `out`)."""
    for folder in {source, *(version_folder(out, v) for v in local_versions(out))}:
        if _inside(dest, folder):
            raise ValueError(f"{dest} is inside the published version folder {folder}: a version is never changed; "
                             "export elsewhere (the default is OUT/_exports/<version>/<trainer>/)")


def read_views(source: str, manifest: dict) -> tuple[dict[str, pl.DataFrame], list[str]]:
    """The views an exporter reads, chat views as conversational rows; a view the version lacks is skipped, and
    one whose rows are standard strings (no roles to rebuild messages from) is skipped with the reason."""
    views, notes = {}, []
    for name in VIEWS_READ:
        if name not in manifest.get("views", {}):
            continue
        try:
            views[name] = read_view(source, name, "conversational" if name in CHAT_VIEWS else None)
        except ValueError as error:  # SchemaMismatch: a standard-format view has no roles
            notes.append(f"{name}: not exported ({error})")
    return views, notes


_RECIPE_BLOCK = re.compile(r"^## Recipe\s*\n+```yaml\n(.*?)\n```", re.S | re.M)


def recipe_verify_config(source: str) -> tuple[dict | None, str | None]:
    """(the build's verify config as JSON, why not) from the recipe the version's card holds (the validated
    recipe, defaults included); the rewards of a verl export decide with it."""
    try:
        with open(os.path.join(source, "README.md"), encoding="utf-8") as f:
            found = _RECIPE_BLOCK.search(f.read())
        recipe = yaml.safe_load(found.group(1)) if found else None
        if not isinstance(recipe, dict) or "verify" not in recipe:
            return None, "the card holds no recipe with a verify section"
        return VerifyConfig.model_validate(recipe["verify"]).model_dump(mode="json"), None
    except (OSError, ValueError, yaml.YAMLError) as error:  # pydantic's ValidationError is a ValueError
        return None, f"the card's recipe is unreadable ({type(error).__name__})"


def _write(path: str, rows) -> None:
    if path.endswith(".parquet"):
        pq.write_table(rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows), path)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(jsonl(rows.to_pylist() if isinstance(rows, pa.Table) else rows))


def write_export(export: Export, dest: str, about: dict) -> None:
    """Write the files into a temporary folder beside `dest`, then rename it into place (replacing an older one)."""
    parent = os.path.dirname(os.path.abspath(dest))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(dest)}.tmp-{uuid.uuid4().hex}")
    os.makedirs(tmp)
    try:
        for f in export.files:
            path = os.path.join(tmp, f.name)
            if f.rows is not None:
                _write(path, f.rows)
            else:
                with open(path, "w", encoding="utf-8") as out:
                    out.write(f.text or "")
        with open(os.path.join(tmp, "export.json"), "w", encoding="utf-8") as out:
            json.dump(about, out, indent=2, sort_keys=True)
            out.write("\n")
        old = None
        if os.path.exists(dest):
            old = os.path.join(parent, f".{os.path.basename(dest)}.old-{uuid.uuid4().hex}")
            os.rename(dest, old)
        os.rename(tmp, dest)
        if old:
            shutil.rmtree(old)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)


def export_version(out: str, trainer: str, version: str | None = None, dest: str | None = None) -> ExportResult:
    """Export a published version of `out` (a local output folder or a version folder; the latest version unless
    `version`) for `trainer`, after checking the version against its manifest. Returns what was written."""
    if trainer not in EXPORTERS:
        raise ValueError(f"unknown trainer {trainer!r}; choose one of {', '.join(EXPORTERS)}")
    out, source, version = resolve_source(out, version)
    problems = check_version(source, version)
    if problems:
        raise CorruptVersionError(f"{source} does not match its manifest: " + "; ".join(problems[:5]))
    dest = dest or os.path.join(out, EXPORTS_FOLDER, version, trainer)
    check_dest(dest, out, source)
    manifest = read_manifest(source)
    views, notes = read_views(source, manifest)
    if trainer == "verl":  # its rewards run the cascade: with the build's verify config, as the build did
        verify_config, why = recipe_verify_config(source)
        if why:
            notes.append(f"reward.py decides with the default verify config: {why}")
        export = export_verl(views, verify_config=verify_config)
    else:
        export = EXPORTERS[trainer](views)
    commands = {name: command.replace("{dest}", os.path.abspath(dest)) for name, command in export.commands.items()}
    result = ExportResult(trainer=trainer, version=version, source=os.path.abspath(source), dest=os.path.abspath(dest),
                          files={f.name: f.count for f in export.files},
                          views={f.name: f.view for f in export.files if f.view},
                          commands=commands, notes=notes + export.notes)
    about = {"trainer": trainer, "version": version, "source": result.source, "build_id": manifest.get("build_id"),
             "recipe_hash": manifest.get("recipe_hash"), "files": result.files, "views": result.views,
             "commands": commands, "notes": result.notes}
    for f in export.files:  # commands and YAML snippets name the folder they were written to
        if f.text is not None:
            f.text = f.text.replace("{dest}", result.dest)
    write_export(export, dest, about)
    return result
