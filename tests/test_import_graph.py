"""No import circle among graftwork's modules, counting the imports inside functions.

Every module under src/graftwork is parsed with `ast`; each import of a graftwork module
(at module level, or in a function, a class body, under `if TYPE_CHECKING`) is an edge from
the importing module to the imported one (`from graftwork.runs import lock` is an edge to
`graftwork.runs.lock` when that is a module, else to the package `graftwork.runs`). The
graph must have no cycle: a circle hidden behind function-level imports is still a circle,
one that only shows when the function runs. Importing a module also runs its packages'
`__init__`; those implicit edges are left out: the top package's `graftwork.run` and
`graftwork.load` reach the runs and the predictor only when called, once everything they
need has been imported, and the layer contract (pyproject.toml) keeps the others below.

An import of a graftwork module inside a function is only there to defer torch (or another
heavy dependency) until the function runs, and says so on its line: `# torch`, or `# optional`
for an optional one (MLflow, TensorBoard, W&B); `# registry` marks a registered module (an
objective) whose function needs the recipe schema, which imports the registered module itself
(through the registry) when it builds its unions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import graftwork

ROOT = Path(graftwork.__file__).parent


def module_names() -> dict[str, Path]:
    """Dotted module name → its file, for every module of the package."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The graftwork modules that module `name` (file `path`) imports anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x, from ..a import b
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            subs = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t for t in subs if t in modules] or [base]
        else:
            continue
        edges |= {t for t in targets if t in modules and t != name}
    return edges


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imported(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, …, a], or None (depth-first search, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


MARKERS = ("# torch", "# optional", "# registry")

# function-level imports without a marker, in files of other work in progress (issue 23):
# each is to get its marker or move to the top of its module, and then leave this list
UNMARKED: set[tuple[str, str]] = set()


def unmarked_function_imports() -> set[tuple[str, str]]:
    """(file under graftwork/, module) of each function-level graftwork import without a marker."""
    found = set()
    for path in sorted(ROOT.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        tree = ast.parse("\n".join(lines), str(path))
        for function in ast.walk(tree):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.ImportFrom) and not node.level:
                    modules = [node.module or ""]
                elif isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                else:
                    continue
                text = " ".join(lines[node.lineno - 1 : node.end_lineno])
                for module in modules:
                    if module.startswith("graftwork") and not any(m in text for m in MARKERS):
                        found.add((path.relative_to(ROOT).as_posix(), module))
    return found


def test_the_cycle_finder_finds_a_circle_and_passes_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_function_level_imports_are_edges_of_the_graph():
    graph = import_graph()
    # graftwork.run defers the whole run (and torch) to when it is called
    assert "graftwork.runs.finetune" in graph["graftwork"]


def test_no_import_circle_among_graftwork_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " → ".join(cycle)


def test_imports_inside_functions_only_defer_torch():
    found = unmarked_function_imports()
    new = sorted(found - UNMARKED)
    assert not new, f"function-level graftwork imports without a # torch / # optional reason: {new}"
    gone = sorted(UNMARKED - found)
    assert not gone, f"marked or moved now; take them out of UNMARKED: {gone}"
