"""The package imports in one direction: no cycle in the graph of `i3d_jax` modules, with
function-level imports counted (read with `ast`, nothing imported)."""

import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "i3d_jax"


def _module_name(path: pathlib.Path, package: pathlib.Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: pathlib.Path = PACKAGE) -> dict[str, set[str]]:
    """{module: the package modules it imports anywhere in its body}. An `__init__` importing its
    own submodules and a submodule importing its parent package are not edges (Python resolves
    those without a cycle)."""
    files = {_module_name(p, package): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                inside = path.name == "__init__.py" and name.startswith(mod + ".")
                if name and name != mod and not inside and not mod.startswith(name + "."):
                    graph[mod].add(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as `[a, b, ..., a]`, or None (depth-first search with colours)."""
    colour = dict.fromkeys(graph, 0)  # 0 new, 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if colour[nxt] == 1:
                return path[path.index(nxt) :] + [nxt]
            if colour[nxt] == 0 and (found := visit(nxt)):
                return found
        colour[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if colour[node] == 0 and (found := visit(node)):
            return found
    return None


def test_the_checker_finds_a_function_level_cycle(tmp_path):
    pkg = tmp_path / "i3d_jax"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from i3d_jax import a\n")
    (pkg / "a.py").write_text("from i3d_jax.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from .. import a\n")
    graph = import_graph(pkg)
    assert graph["i3d_jax.a"] == {"i3d_jax.sub", "i3d_jax.sub.b"}
    assert graph["i3d_jax.sub.b"] == {"i3d_jax.a"}
    assert find_cycle(graph) == ["i3d_jax.a", "i3d_jax.sub.b", "i3d_jax.a"]
    (pkg / "sub" / "b.py").write_text("def f():\n    import numpy\n")
    assert find_cycle(import_graph(pkg)) is None


def test_no_import_cycle_in_the_package():
    graph = import_graph()
    assert {"i3d_jax.training.loop", "i3d_jax.training.steps"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_training_layers_import_one_way():
    """config -> state -> steps -> checkpoints/run_utils -> evaluation -> video -> loop/evaluate;
    evaluation and the eval entry never import the loop."""
    graph = import_graph()
    order = ["config", "state", "steps", "checkpoints", "run_utils", "evaluation", "task",
             "video", "evaluate", "loop"]  # fmt: skip
    rank = {f"i3d_jax.training.{m}": i for i, m in enumerate(order)}
    for mod, deps in graph.items():
        for dep in deps:
            if mod in rank and dep in rank:
                assert rank[dep] < rank[mod], f"{mod} imports {dep}, a later layer"
    assert "i3d_jax.training.loop" not in graph["i3d_jax.training.evaluate"]
