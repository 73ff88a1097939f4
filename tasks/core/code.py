"""The code part of a shard key: a hash of the source a stage runs, found by following its imports.

A hand-kept version number is bumped only when someone remembers to. Instead, a stage's shard keys cover the syntax
tree of the module that computes them and of every cotforge module it imports, directly or not, at the top of a file
or inside a function (a lazy import runs all the same), plus the `__init__` of each package on the way (importing a
module runs it). Docstrings, comments and formatting are left out: rewording or reformatting keeps every cache; a
change to what runs invalidates the stages that run it, and only those.

The public API module (`cotforge`) and the flows are never followed: they import every stage, and a stage's output
does not depend on how the flows compose it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import cache
from pathlib import Path

PACKAGE = "cotforge"
NOT_FOLLOWED = ("cotforge.flows",)


def _is_followed(name: str) -> bool:
    return name.startswith(PACKAGE + ".") and not any(name == n or name.startswith(n + ".") for n in NOT_FOLLOWED)


@cache
def _package_dir(top: str) -> Path | None:
    """The folder of a top-level part of cotforge (`cotforge.tasks` ...): each may sit elsewhere (the setuptools
    package-dir mapping puts the repository's `tasks/` there), so each is looked up; only its `__init__` runs."""
    try:
        spec = importlib.util.find_spec(top)
    except ModuleNotFoundError:
        return None
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else None


@cache
def _source(name: str) -> tuple[str, bool] | None:
    """(source text, is a package) of a cotforge module, or None when `name` is not one (`a.b.Name`: an attribute).
    Found on disk, never imported: hashing a stage must not load the backends it could run."""
    parts = name.split(".")
    if len(parts) < 2 or (folder := _package_dir(".".join(parts[:2]))) is None:
        return None
    base = folder.joinpath(*parts[2:])
    for path, is_package in ((base / "__init__.py", True), (base.with_suffix(".py"), False)):
        if path.is_file():
            return path.read_text(encoding="utf-8"), is_package
    return None


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


@cache
def _parsed(name: str) -> tuple[str, frozenset[str]]:
    """(normalised syntax tree, cotforge modules it imports) of one module."""
    source, is_package = _source(name)
    tree = ast.parse(source)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".")
                anchor = parts[: len(parts) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    imported = frozenset(m for m in found if _is_followed(m) and _source(m) is not None)
    return ast.dump(_strip_docstrings(tree), include_attributes=False), imported


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(2, len(parts))]


@cache
def code_modules(module: str, exclude: tuple[str, ...] = ()) -> frozenset[str]:
    """`module` and every cotforge module it runs (imports, transitively, and their packages' `__init__`), less the
    packages in `exclude` (code a stage imports but does not run with the config at hand)."""
    def wanted(name: str) -> bool:
        return _is_followed(name) and not any(name == e or name.startswith(e + ".") for e in exclude)

    if not wanted(module) or _source(module) is None:
        return frozenset()
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += [m for m in [*_parents(name), *_parsed(name)[1]] if wanted(m)]
    return frozenset(seen)


@cache
def code_hash(module: str, exclude: tuple[str, ...] = ()) -> str:
    """A short hash of the code `module` runs (empty for a module outside cotforge, e.g. a test)."""
    names = sorted(code_modules(module, exclude))
    if not names:
        return ""
    digest = hashlib.sha256()
    for name in names:
        digest.update(f"{name}\0{_parsed(name)[0]}\0".encode())
    return digest.hexdigest()[:16]
