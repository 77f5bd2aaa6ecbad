"""Layering of the mlitb package: no import cycle between its packages or its modules (every import counts,
also those inside functions), no module over 400 lines, and access decisions made in one place (mlitb/auth.py)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "mlitb"
MAX_LINES = 400
PACKAGES = {".".join(("mlitb",) + p.parent.relative_to(ROOT).parts).rstrip(".") for p in ROOT.rglob("__init__.py")}


def modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        if "static" in path.relative_to(ROOT).parts:
            continue
        name = ".".join(("mlitb",) + path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        out[name] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the mlitb modules it imports (`from mlitb.x import y` names module x.y if it exists, else x)."""
    mods = modules()

    def resolve(name: str) -> str:
        while name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "mlitb":
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names if alias.name.split(".")[0] == "mlitb"]
            else:
                continue
            graph[name] |= {resolve(t) for t in targets} - {name}
    return graph


def package_of(module: str) -> str:
    """mlitb.server.app -> server; a top-level module is its own unit (mlitb.auth -> auth)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "mlitb"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as a path [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for module, targets in import_graph().items():
        for target in targets:
            if package_of(target) not in (package_of(module), "mlitb"):  # `mlitb` itself: only __version__
                graph[package_of(module)].add(package_of(target))
    return graph


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_two_packages_of_mlitb_import_each_other_even_through_others():
    graph = package_graph()
    assert {"server", "master", "data", "auth"} <= set(graph)  # the graph is really built
    assert find_cycle(graph) is None, f"package import cycle: {' -> '.join(find_cycle(graph))}"


def test_no_two_modules_of_mlitb_import_each_other_even_through_others():
    # a package's __init__ importing its own modules (to re-export or register them) is the package itself, and
    # any of its modules imports it first anyway: those edges are left out; every other one counts
    graph = {m: {t for t in targets if not (m in PACKAGES and t.startswith(m + "."))}
             for m, targets in import_graph().items()}
    assert find_cycle(graph) is None, f"module import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_lower_layers_import_nothing_of_the_server():
    graph = package_graph()
    for low in ("auth", "errors", "config", "codec", "protocol", "model", "training", "store", "data", "master",
                "closure", "workers"):
        assert "server" not in graph.get(low, set()), f"{low} imports mlitb.server"


def test_no_module_is_longer_than_400_lines():
    long = {str(p.relative_to(ROOT.parent)): n for p in modules().values()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_only_mlitb_auth_compares_tokens():
    """Every access decision (REST routes, the data server, the WebSocket JOIN) goes through mlitb.auth.allows:
    nothing else calls the comparisons it is built from."""
    primitives = {"matches", "is_admin", "compare_digest"}
    callers = set()
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                f = node.func
                called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                if called in primitives and name != "mlitb.auth":
                    callers.add(f"{name}: {called}")
    assert callers == set()
