"""The package's folders are its layers: each part imports only parts below it.

Read from the source (AST, every import, those inside functions included): no import
cycle between files, none between top-level parts, and the math imports no Flower.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "flower_difmaml"

# Lowest first. A part may import itself and the parts of lower layers, nothing else.
LAYERS = (
    ("errors", "streams", "agent_models"),
    ("devices",),
    ("network",),
    ("meta",),
    ("models",),
    ("tasks",),
    ("config",),
    ("learner", "strategies"),
    ("block",),
    ("runner",),
    ("flower",),
    ("client_app", "server_app"),
    ("cli",),
    ("__main__",),
)
LAYER_OF = {part: depth for depth, parts in enumerate(LAYERS) for part in parts}
MATH = ("errors", "streams", "devices", "network", "meta", "models", "tasks")  # runs where only torch is installed


def module_name(path: Path) -> str:
    parts = ("flower_difmaml", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(module: str) -> set[str]:
    """Every module ``module`` imports (absolute names), from anywhere in its file."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.add(base)
            # ``from . import client_app``: the name is a module of its own
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return found


def part_of(module: str) -> str | None:
    """``flower_difmaml.network.graphs`` -> ``network``; the package itself -> None."""
    names = module.split(".")
    return names[1] if len(names) > 1 else None


def own_imports(module: str) -> set[str]:
    """The package's modules that ``module`` imports (the package's root, which Python imports
    with every one of them and which imports nothing, left out)."""
    return {name for name in imports_of(module) if name in MODULES and name not in (module, "flower_difmaml")}


def test_the_package_root_imports_nothing_of_its_own() -> None:
    assert not {name for name in imports_of("flower_difmaml") if name.startswith("flower_difmaml")}


def test_every_part_has_a_layer() -> None:
    parts = {part_of(module) for module in MODULES} - {None}
    assert parts <= set(LAYER_OF), f"parts without a layer in LAYERS: {sorted(parts - set(LAYER_OF))}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if part_of(m)))
def test_imports_go_only_downward(module: str) -> None:
    part = part_of(module)
    upward = sorted(
        name for name in own_imports(module)
        if part_of(name) != part and LAYER_OF[part_of(name)] >= LAYER_OF[part]
    )
    assert not upward, f"{module} ({part}) imports {upward}: not below it in {LAYERS}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if part_of(m) in MATH))
def test_math_imports_no_flower(module: str) -> None:
    flower = sorted(name for name in imports_of(module) if name == "flwr" or name.startswith("flwr."))
    assert not flower, f"{module} imports {flower}; the math must run without flwr"


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle in the directed graph ``edges`` (node -> successors), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for successor in sorted(edges.get(node, ())):
            if state.get(successor) == 1:
                return path[path.index(successor):] + [successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_cycle_between_files() -> None:
    cycle = find_cycle({module: own_imports(module) for module in MODULES})
    assert cycle is None, " -> ".join(cycle or [])


def test_no_cycle_between_parts() -> None:
    edges: dict[str, set[str]] = {}
    for module in MODULES:
        if part := part_of(module):
            edges.setdefault(part, set()).update(
                p for name in own_imports(module) if (p := part_of(name)) and p != part
            )
    cycle = find_cycle(edges)
    assert cycle is None, " -> ".join(cycle or [])


def test_importing_the_package_has_no_side_effect() -> None:
    """Every module (but the __main__ ones, which run the command) imported in a fresh process
    leaves torch's thread count, the environment and pyplot (not imported) as they were (the process that needs a
    setting sets it where it starts). What the package imports from other packages is imported
    first: some of those set variables on import (flwr GRPC_*, scikit-learn KMP_DUPLICATE_LIB_OK)."""
    import json
    import subprocess
    import sys

    others = sorted({name for module in MODULES for name in imports_of(module) if not name.startswith("flower_difmaml")})
    ours = sorted(module for module in MODULES if not module.endswith("__main__"))
    script = (
        "import importlib, json, os, torch\n"
        f"for name in {others!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError:\n"
        "        pass\n"
        "threads, env = torch.get_num_threads(), dict(os.environ)\n"
        f"for name in {ours!r}:\n"
        "    importlib.import_module(name)\n"
        "import sys\n"
        "print(json.dumps([threads, torch.get_num_threads(), sorted(set(os.environ.items()) ^ set(env.items())),\n"
        "                  'matplotlib.pyplot' in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    before, after, changed, pyplot = json.loads(done.stdout.splitlines()[-1])
    assert after == before and changed == []
    assert not pyplot  # pyplot's global state (backend, open figures) is the user's: plots use matplotlib's Figure
