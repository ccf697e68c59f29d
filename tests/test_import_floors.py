"""The house's floors, read from the code's imports (ast, nothing imported): no circle, and no import up a floor.

Floors, low to high (docs/floors.md says why):
- sightfleet: the shared floor (contracts, config, AWS adapters, deploy tooling); imports no first-party package;
- the tiers app_tier, web_tier, controller, workload_generator: the shared floor only, never each other;
- devstack: the shared floor only. It starts the tiers as processes by their `python -m` command lines, which are
  their stable interface, and never imports them, so a tier's insides can change without the local stack noticing;
- testkit: helpers that start and probe the real stack and build the pipeline in-process: any floor below;
- benchmarks: anything below;
- tests: anything, the benchmarks' simulator too (tests/test_fleet_sim.py); nothing imports a test.
Every import counts, also one inside a function: it still ties the two modules together.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TIERS = {"app_tier", "web_tier", "controller", "workload_generator"}
MAY_IMPORT = {
    "sightfleet": set(),
    **{tier: {"sightfleet"} for tier in TIERS},
    "devstack": {"sightfleet"},
    "testkit": {"sightfleet", "devstack", *TIERS},
    "benchmarks": {"sightfleet", "devstack", "testkit", *TIERS},
    "tests": {"sightfleet", "devstack", "testkit", "benchmarks", *TIERS},
}


def module_name(path: Path, root: Path = REPO) -> str:
    """The dotted name of a source file (a package's __init__.py names the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, is_package: bool) -> list[tuple[str, ...]]:
    """For each name an import statement of the source brings in, the module names it may be, likeliest first
    (relative ones resolved): `from a import b` is module a.b if there is one, else a name in module a."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name,) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join([*package[:len(package) - node.level + 1], *([base] if base else [])])
            found += [(f"{base}.{alias.name}", base) for alias in node.names]
    return found


def import_graph(root: Path = REPO, packages=tuple(MAY_IMPORT)) -> dict[str, set[str]]:
    """First-party module -> the first-party modules it imports (a name that is no module maps to its package)."""
    files = {module_name(path, root): path for package in packages for path in (root / package).rglob("*.py")}
    graph = {}
    for module, path in files.items():
        targets = set()
        for candidates in imported_names(path.read_text(), module, path.name == "__init__.py"):
            name = next((each for each in candidates if each in files), candidates[-1])
            while name and name not in files:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import from a package to one it may not import, as 'a -> b'."""
    found = []
    for module, targets in graph.items():
        floor = module.split(".")[0]
        found += [f"{module} -> {target}" for target in sorted(targets)
                  if target.split(".")[0] != floor and target.split(".")[0] not in MAY_IMPORT[floor]]
    return sorted(found)


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of two modules or more (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(start: str) -> None:
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while not group or group[-1] != node:
                        group.append(stack.pop())
                        on_stack.discard(group[-1])
                    if len(group) > 1:
                        found.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def test_no_import_runs_up_a_floor_or_across_the_tiers():
    assert upward_imports(import_graph()) == []


def test_no_modules_import_each_other_in_a_circle():
    assert circles(import_graph()) == []


def test_every_first_party_package_has_a_floor():
    packages = {path.parent.name for path in REPO.glob("*/__init__.py")} | {"benchmarks"}
    assert packages <= set(MAY_IMPORT), f"give {packages - set(MAY_IMPORT)} a floor in MAY_IMPORT"


@pytest.mark.parametrize("files, expected_up, expected_circles", [
    # a clean house
    ({"sightfleet/a.py": "import os\n", "web_tier/b.py": "from sightfleet import a\n"}, [], []),
    # the shared floor reaching up into a tier, inside a function too
    ({"sightfleet/a.py": "def f():\n    from web_tier.b import x\n", "web_tier/b.py": "x = 1\n"},
     ["sightfleet.a -> web_tier.b"], []),
    # one tier importing another
    ({"controller/a.py": "import app_tier.b\n", "app_tier/b.py": ""}, ["controller.a -> app_tier.b"], []),
    # devstack importing a tier it should only start as a process
    ({"devstack/a.py": "from controller import b\n", "controller/b.py": ""}, ["devstack.a -> controller.b"], []),
    # benchmarks importing tests (a name, then a module)
    ({"benchmarks/a.py": "from tests.b import c\n", "tests/b.py": "c = 1\n"}, ["benchmarks.a -> tests.b"], []),
    ({"benchmarks/a.py": "from tests import b\n", "tests/__init__.py": "", "tests/b.py": ""},
     ["benchmarks.a -> tests.b"], []),
    # a circle through a relative import and a package's face
    ({"web_tier/__init__.py": "from .b import x\n", "web_tier/b.py": "from web_tier.c import y\nx = 1\n",
      "web_tier/c.py": "from . import b\ny = 2\n"}, [], [["web_tier.b", "web_tier.c"]]),
])
def test_the_walk_finds_what_it_must(tmp_path, files, expected_up, expected_circles):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, {name.split("/")[0] for name in files})
    assert upward_imports(graph) == expected_up
    assert circles(graph) == expected_circles
