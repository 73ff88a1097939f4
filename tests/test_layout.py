"""The package layout: one `cotforge` import package, no import cycles, stages never import the flows."""

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"cotforge": ROOT / "cotforge", "cotforge.flows": ROOT / "flows", "cotforge.tasks": ROOT / "tasks",
           "cotforge.schemas": ROOT / "schemas"}


def _modules() -> dict[str, Path]:
    """Every module of the package, by its dotted name."""
    out = {}
    for package, folder in FOLDERS.items():
        # cotforge/ itself holds only the API module (a checkout may link the stage folders in there: not twice)
        for path in folder.glob("*.py") if package == "cotforge" else folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            out[".".join((package, *parts))] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the package that `name` imports, wherever in the file (functions too): a lazy import is an
    edge all the same. `from a import b` counts as `a.b` when that is a module."""
    found = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_in_the_package():
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_tasks_never_import_flows_and_schemas_import_neither():
    graph = _graph()
    upward = {(m, d) for m, deps in graph.items() for d in deps
              if (m.startswith("cotforge.tasks") and d.startswith("cotforge.flows"))
              or (m.startswith("cotforge.schemas") and d.startswith(("cotforge.tasks", "cotforge.flows")))}
    assert upward == set()


def test_no_import_by_the_old_top_level_names():
    old = {}
    for name, path in {**_modules(), **{p.stem: p for p in (ROOT / "tests").rglob("*.py")}}.items():
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            bad = [m for m in modules if m.split(".")[0] in ("tasks", "flows", "schemas")]
            if bad:
                old[name] = bad
    assert old == {}


def test_pyproject_lists_every_package_folder():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {name for name, path in _modules().items() if path.name == "__init__.py"}
    assert set(config["packages"]) == folders
    assert config["package-dir"] == {name: str(path.relative_to(ROOT)) for name, path in FOLDERS.items()}


def test_stage_modules_stay_short():
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text().splitlines())) > 320 and name.startswith("cotforge.tasks")}
    assert long == {}


@pytest.mark.slow
def test_pip_install_puts_only_cotforge_in_site_packages(tmp_path):
    """A real, non-editable `pip install .` into an empty target folder (no dependencies: only the layout is under
    test): the only top-level package is `cotforge`, every module and the JSON Schemas are in it, and it imports."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(site), str(ROOT)], check=True, cwd=tmp_path)
    top = sorted(p.name for p in site.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin")
    assert top == ["cotforge"]
    installed = {".".join(p.relative_to(site).with_suffix("").parts) for p in (site / "cotforge").rglob("*.py")}
    expected = {name + (".__init__" if path.name == "__init__.py" else "") for name, path in _modules().items()}
    assert expected <= installed
    assert list((site / "cotforge" / "schemas" / "json").rglob("*.json")), "the JSON Schemas are package data"
    # From an empty folder with the target first on the path: the installed copy is what imports, not the checkout.
    check = (f"import sys; sys.path.insert(0, {str(site)!r}); import cotforge, cotforge.tasks.verify.extract as e; "
             "cotforge.pull; print(e.__file__)")
    out = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith(str(site))
