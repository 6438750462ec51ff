"""The layers stay one-way: no import cycle among the modules of ``stunet`` and ``demo``, and no module importing
one of a layer above its own (the layers of docs/architecture.md: ``LAYERS`` and ``MAY_IMPORT`` below).

The graph is read from the source (``ast``), not by importing it. Every ``import`` statement counts,
at module level and inside functions alike: a function-level import still runs and still binds two
modules to each other, so a cycle through one is a cycle in the layering (and the one this test was
written for, compare -> evaluate -> paired -> compare, went through function-level imports). Imports
under ``if TYPE_CHECKING:`` do not run and do not count. Edges go to the module named; a package's
``__init__`` that Python runs first on the way is not an edge (every submodule would otherwise point
at its package).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("stunet", "demo")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every Import / ImportFrom node, skipping the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """module -> the modules of ``stunet`` / ``demo`` it imports."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                # ``from pkg import name``: the submodule pkg.name if there is one, else pkg itself
                targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in mods else prefix for a in node.names]
            for t in targets:
                while t and t not in mods:              # ``import stunet.x.y`` of a name inside a module
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state: dict[str, int] = {}                           # 1: on the current path, 2: done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, iters = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while path:
            nxt = next(iters[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                iters.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph[nxt])))
    return None


def test_the_graph_is_read():
    g = import_graph()
    assert "stunet.pipeline" in g and "demo.app" in g
    assert "stunet.model" in g["stunet.pipeline"] or any(m.startswith("stunet.") for m in g["stunet.pipeline"])


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_stunet_or_demo():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# ---------------------------------------------------------------------------- the layers (docs/architecture.md)
# Each module's layer; a module may import its own layer and the layers listed for it, never one above.
LAYERS = {
    "core": ["stunet.layers", "stunet.config", "stunet.defaults", "stunet.text", "stunet.model", "stunet.diffusion",
             "stunet.checkpoint", "stunet.video", "stunet.device", "stunet.precision"],
    "inside": ["stunet.analysis", "stunet.inspection"],
    "sampling": ["stunet", "stunet.conditioning", "stunet.denoiser", "stunet.sampling", "stunet.pipeline",
                 "stunet.editing", "stunet.video_decode", "stunet.style_weights", "stunet.cascade",
                 "stunet.cascade.config", "stunet.cascade.checkpoint", "stunet.cascade.pipeline", "stunet.ssr",
                 "stunet.ssr.config", "stunet.ssr.model", "stunet.ssr.checkpoint", "stunet.ssr.sampling"],
    "world": ["stunet.shapes.*"],
    "instruments": ["stunet.interventions", "stunet.tracking", "stunet.attention_summary", "stunet.ablate"],
    "training": ["stunet.training_loop", "stunet.flops", "stunet.train", "stunet.distill", "stunet.guidance_distill",
                 "stunet.cascade.train", "stunet.cascade.testing", "stunet.stylize", "stunet.ssr.data",
                 "stunet.ssr.train"],
    "tools": ["stunet.cli", "stunet.__main__", "stunet.space", "stunet.space_rules"],
    "studio": ["demo", "demo.*"],
}
MAY_IMPORT = {
    "core": set(),
    "inside": {"core"},
    "sampling": {"core", "inside"},
    "world": {"core", "inside", "sampling"},
    "instruments": {"core", "inside", "sampling", "world"},
    "training": {"core", "inside", "sampling", "world"},
    "tools": {"core", "inside", "sampling", "world", "instruments", "training"},
    "studio": {"core", "inside", "sampling", "world", "instruments"},
}


def layer_of(module: str) -> str | None:
    for layer, names in LAYERS.items():
        for n in names:
            if module == n or (n.endswith(".*") and (module == n[:-2] or module.startswith(n[:-1]))):
                return layer
    return None


def test_every_module_has_a_layer():
    """A new module is placed in docs/architecture.md's layers (and here) when it is added."""
    assert [m for m in import_graph() if layer_of(m) is None] == []


def test_layers_import_only_downwards():
    bad = [f"{m} ({layer_of(m)}) -> {t} ({layer_of(t)})" for m, targets in import_graph().items() for t in targets
           if layer_of(t) not in MAY_IMPORT.get(layer_of(m), set()) | {layer_of(m)}]
    assert bad == [], "imports against the layering (docs/architecture.md):\n" + "\n".join(bad)
