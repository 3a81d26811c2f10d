"""The package's layering: public names, an import graph without cycles or upward imports, a lean align path."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import midialign

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "midialign"
EXAMPLE = ROOT / "examples" / "prelude"

# Which layers each layer may import (a layer may always import itself).
# Low to high: base < io < core < api < cli; training and evaluation sit beside the align path.
ALLOWED = {
    "base": {"base"},
    "io": {"base"},
    "core": {"base", "io"},
    "api": {"base", "io", "core"},
    "cli": {"base", "io", "core", "api", "training", "evaluation", "root"},
    "training": {"base", "io", "core"},
    "evaluation": {"base", "io", "core", "training"},
    "root": set(),  # the package root resolves its exports lazily, by name
}
BASE_MODULES = {"config", "errors", "notes", "alignment"}
API_MODULES = {"aligner", "plot"}
# Only these layers may import torch (training.model holds the torch CRNN); the align path runs
# core.network's numpy CRNN, since importing torch alone takes seconds.
TORCH_LAYERS = {"training", "evaluation"}


def layer_of(module: str) -> str:
    """'midialign.core.dtw' -> 'core'; the layer names of ALLOWED."""
    parts = module.split(".")
    if len(parts) == 1:
        return "root"
    top = parts[1]
    if top in BASE_MODULES:
        return "base"
    if top in API_MODULES:
        return "api"
    if top in ALLOWED:
        return top
    raise ValueError(f"{module} is in no layer: add it to test_layout.py's layers")


def package_modules(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under package_dir (a package named after its folder)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = (package_dir.name, *path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def imported_modules(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules in `known` that `module` imports anywhere in its file (top level or inside functions)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # `from pkg import name` imports the submodule pkg.name when there is one, else pkg itself.
            targets = [f"{target}.{alias.name}" if f"{target}.{alias.name}" in known else target for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            while parts and ".".join(parts) not in known:  # `import a.b.c` of a non-module name: its nearest module
                parts.pop()
            if parts and ".".join(parts) != module:
                found.add(".".join(parts))
    return found


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, from the source text (nothing is imported)."""
    modules = package_modules(package_dir)
    return {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None: depth-first search, colouring modules on the stack."""
    on_stack: list[str] = []
    state: dict[str, str] = {}  # "open" while on the stack, then "done"

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        on_stack.append(module)
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == "open":
                return on_stack[on_stack.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        on_stack.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """'a -> b (layer -> layer)' for every import the layers forbid."""
    bad = []
    for module, deps in sorted(graph.items()):
        src = layer_of(module)
        for dep in sorted(deps):
            dst = layer_of(dep)
            if dst != src and dst not in ALLOWED[src]:
                bad.append(f"{module} -> {dep} ({src} -> {dst})")
    return bad


def test_public_names_import_and_resolve():
    from midialign import Aligner, Notes, align

    assert (Aligner.__module__, align.__module__, Notes.__module__) == ("midialign.aligner", "midialign.aligner", "midialign.notes")
    for name in midialign.__all__:
        assert getattr(midialign, name).__module__.startswith("midialign."), name
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        midialign.nonexistent  # noqa: B018


def test_graph_sees_function_level_and_relative_imports():
    graph = import_graph(PACKAGE)
    assert "midialign.core.refiner" in graph["midialign.aligner"]  # imported inside Aligner.align
    assert "midialign.core.roll" in graph["midialign.core.decode"]  # `from .roll import ...`
    assert "midialign" in graph["midialign.cli.app"]  # `from .. import __version__`


def test_import_graph_has_no_cycles():
    assert find_cycle(import_graph(PACKAGE)) is None


def test_no_module_imports_a_higher_layer():
    assert layer_violations(import_graph(PACKAGE)) == []


def torch_importers(package_dir: Path) -> list[str]:
    """Dotted names of the package's modules that import torch anywhere in their file."""
    found = []
    for module, path in package_modules(package_dir).items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            if any(name.split(".")[0] == "torch" for name in names):
                found.append(module)
                break
    return sorted(found)


def test_only_training_and_evaluation_import_torch():
    importers = torch_importers(PACKAGE)
    assert "midialign.training.model" in importers
    assert [m for m in importers if layer_of(m) not in TORCH_LAYERS] == []


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "midialign"
    (pkg / "io").mkdir(parents=True)
    (pkg / "core").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "io" / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "notes.py").write_text("def f():\n    from .io import midi\n")  # base -> io, inside a function
    (pkg / "io" / "midi.py").write_text("from ..notes import f\n")
    (pkg / "core" / "dtw.py").write_text("import midialign.io.midi\n")
    graph = import_graph(pkg)
    assert find_cycle(graph) == ["midialign.io.midi", "midialign.notes", "midialign.io.midi"]
    assert layer_violations(graph) == ["midialign.notes -> midialign.io.midi (base -> io)"]


ALIGN_AND_LIST_MODULES = f"""
import json, sys
from midialign import Aligner
result = Aligner().align({str(EXAMPLE / "audio.flac")!r}, {str(EXAMPLE / "input.mid")!r})
print(json.dumps({{"notes": len(result.notes), "modules": sorted(m for m in sys.modules if m.startswith("midialign")),
                  "torch": "torch" in sys.modules}}))
"""


def test_aligning_the_example_imports_no_training_or_evaluation_code_nor_torch():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", ALIGN_AND_LIST_MODULES], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["notes"] == 96
    assert {"midialign.core.refiner", "midialign.core.network", "midialign.core.checkpoint"} <= set(report["modules"])  # the network really ran
    assert not report["torch"]  # the numpy CRNN: importing torch alone takes seconds
    unwanted = [m for m in report["modules"] if m.split(".")[1:2] in (["training"], ["evaluation"], ["cli"], ["plot"])]
    assert unwanted == []


def private_uses(path: Path) -> list[str]:
    """'file:line name' for each import of a midialign name that starts with an underscore, and each
    such attribute read from a midialign module or object, in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    bound: set[str] = set()  # local names bound to midialign modules or objects
    found = []

    def private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "midialign":
                    bound.add(alias.asname or "midialign")
                    found += [f"{path.name}:{node.lineno} {alias.name}" for part in alias.name.split(".") if private(part)]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "midialign":
            for alias in node.names:
                bound.add(alias.asname or alias.name)
                if private(alias.name) or any(private(part) for part in node.module.split(".")):
                    found.append(f"{path.name}:{node.lineno} {node.module}.{alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound:
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
    return found


def test_private_use_scan_finds_both_forms(tmp_path):
    script = tmp_path / "s.py"
    # The fixture's private names are built, so this file itself holds no private import.
    hidden, helper = "_" + "hidden", "_" + "helper"
    script.write_text(f"import midialign.core.dtw as d\nfrom midialign.io import {hidden}\nd.{helper}()\nd.public()\n")
    assert private_uses(script) == [f"s.py:2 midialign.io.{hidden}", f"s.py:3 .{helper}"]


@pytest.mark.parametrize("folder", ["tests", "scripts", "benchmarks"])
def test_no_private_midialign_names_outside_the_package(folder):
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, folder
    assert [use for path in files for use in private_uses(path)] == []
