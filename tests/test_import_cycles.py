"""The package imports in one direction: no cycle in the graph of `i3d_jax` modules, with
function-level imports counted (read with `ast`, nothing imported), and the layers of
docs/architecture.md: the network core imports nothing above it, training imports no tool, the
tools and projects sit on top."""

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


# The layers, lowest first (docs/architecture.md). A module imports its own layer or lower ones.
LAYERS = ("core", "weights and flow", "data", "training", "tools", "projects")
TOOLS = ("i3d_jax.extract_features", "i3d_jax.predict", "i3d_jax.fvd", "i3d_jax.flow.cli",
         "i3d_jax.flow.__main__")  # fmt: skip


def layer_of(module: str) -> int:
    """The layer index of a module of the package (the most specific rule first)."""

    def under(*prefixes: str) -> bool:
        return any(module == p or module.startswith(p + ".") for p in prefixes)

    if under("i3d_jax.projects"):
        return LAYERS.index("projects")
    if under(*TOOLS):
        return LAYERS.index("tools")
    if under("i3d_jax.training"):
        return LAYERS.index("training")
    if under("i3d_jax.data"):
        return LAYERS.index("data")
    # i3d_jax.nnx (the network as an NNX module) loads every weights format: it sits beside them.
    if under("i3d_jax.weights", "i3d_jax.flow", "i3d_jax.nnx"):
        return LAYERS.index("weights and flow")
    return LAYERS.index("core")


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    """`a imports b` for every import of a higher layer."""
    return sorted(
        f"{mod} ({LAYERS[layer_of(mod)]}) imports {dep} ({LAYERS[layer_of(dep)]})"
        for mod, deps in graph.items()
        for dep in deps
        if layer_of(dep) > layer_of(mod)
    )


def test_the_package_imports_only_downward():
    graph = import_graph()
    assert {"i3d_jax.model", "i3d_jax.training.loop", "i3d_jax.predict.cli"} <= set(graph)
    assert layer_violations(graph) == []
    assert layer_of("i3d_jax.nnx.module") == LAYERS.index("weights and flow")


def test_the_layer_check_catches_an_upward_import(tmp_path):
    """A network module importing a training module (here at function level) is caught."""
    pkg = tmp_path / "i3d_jax"
    (pkg / "training").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "training" / "__init__.py").write_text("")
    (pkg / "training" / "loop.py").write_text("from i3d_jax import model\n")
    (pkg / "model.py").write_text("def f():\n    from i3d_jax.training import loop\n")
    graph = import_graph(pkg)
    assert find_cycle(graph) == ["i3d_jax.model", "i3d_jax.training.loop", "i3d_jax.model"]
    assert layer_violations(graph) == [
        "i3d_jax.model (core) imports i3d_jax.training (training)",
        "i3d_jax.model (core) imports i3d_jax.training.loop (training)",
    ]
    (pkg / "model.py").write_text("import numpy\n")
    assert layer_violations(import_graph(pkg)) == []


def test_training_layers_import_one_way():
    """config -> workdir/summary -> state -> contract -> steps -> checkpoints/run_utils ->
    evaluation -> task -> tasks -> evaluate/loop; the generic loop imports no task, evaluation never imports the loop."""
    graph = import_graph()
    order = ["defaults", "config", "workdir", "summary", "state", "contract", "steps",
             "checkpoints", "run_utils", "evaluation",
             "task", "tasks.video_model", "tasks.video", "tasks.features", "evaluate", "loop",
             "cli"]  # fmt: skip
    rank = {f"i3d_jax.training.{m}": i for i, m in enumerate(order)}
    assert set(rank) <= set(graph), set(rank) - set(graph)
    for mod, deps in graph.items():
        for dep in deps:
            if mod in rank and dep in rank:
                assert rank[dep] < rank[mod], f"{mod} imports {dep}, a later layer"
    assert "i3d_jax.training.loop" not in graph["i3d_jax.training.evaluate"]
    assert not {d for d in graph["i3d_jax.training.loop"] if d.startswith("i3d_jax.training.tasks")}
