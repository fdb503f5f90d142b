"""pktflow's import structure, read from the source with `ast` (nothing is imported).

docs/design.md fixes the layers: `packet` -> `ports` -> `acl` -> `flow` -> applications,
each importing only the ones before it. These tests keep that picture true as files change:
no import runs up a layer, no two modules of one package import each other in a circle
(lazy imports inside functions and `TYPE_CHECKING` imports count: they are dependencies all
the same), and no module reaches for another module's private (`_name`) names.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "pktflow"

# Layer of each part of pktflow (docs/design.md), by dotted path below `pktflow`; the
# longest matching path wins. A part not listed is an application: it may use every
# library layer, and no library layer may use it.
LAYERS = {
    "": 0,  # pktflow/__init__.py
    "cache": 0,
    "packet": 1,
    "ports": 2,
    "acl": 3,
    "flow": 4,
    "cli": 6,  # `pktflow.cli`, `python -m pktflow`: the one command over everything
    "__main__": 6,
}
APPLICATION_LAYER = 5


@dataclass(frozen=True)
class Import:
    """One import statement's dependency on another pktflow module."""

    importer: str  # dotted module name
    target: str  # dotted module name it depends on
    names: tuple[str, ...]  # names it takes from the target (attribute reads included)
    where: str  # path:line, for the failure message


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def find_modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    drop = node.level - 1 if is_package else node.level
    base = base[: len(base) - drop]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(name: str, path: Path, modules: dict[str, Path], root: Path) -> list[Import]:
    """Every dependency of module `name` on another pktflow module, wherever it is written."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    aliases: dict[str, str] = {}  # local name bound to a pktflow module -> that module

    def where(node: ast.AST) -> str:
        return f"{path.relative_to(root.parent)}:{node.lineno}"

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.append(Import(name, alias.name, (), where(node)))
                    aliases[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(name, is_package, node)
            if source not in modules:
                continue
            taken = []
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:  # `from pktflow.packet import meta as M`
                    found.append(Import(name, submodule, (), where(node)))
                    aliases[alias.asname or alias.name] = submodule
                else:
                    taken.append(alias.name)
            if taken:
                found.append(Import(name, source, tuple(taken), where(node)))
    for node in ast.walk(tree):
        # `M.X` on a module alias takes X from that module, as `from ... import X` would.
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            found.append(Import(name, aliases[node.value.id], (node.attr,), where(node)))
    return [imp for imp in found if imp.target != name]


def all_imports(root: Path = PACKAGE_DIR) -> list[Import]:
    modules = find_modules(root)
    return [
        imp for name, path in modules.items() for imp in imports_of(name, path, modules, root)
    ]


def layer_of(module: str) -> int:
    path = module.split(".")[1:]
    if not path:
        return LAYERS[""]
    for end in range(len(path), 0, -1):
        layer = LAYERS.get(".".join(path[:end]))
        if layer is not None:
            return layer
    return APPLICATION_LAYER


def package_of(module: str, modules: dict[str, Path]) -> str:
    """The package whose files import each other: the module itself if it is a package."""
    return module if modules[module].name == "__init__.py" else module.rpartition(".")[0]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(found)


def describe(component: list[str], imports: list[Import]) -> str:
    members = set(component)
    lines = [" <-> ".join(component)]
    seen = set()
    for imp in imports:
        key = (imp.importer, imp.target)
        if imp.importer in members and imp.target in members and key not in seen:
            seen.add(key)
            lines.append(f"    {imp.importer} -> {imp.target}  ({imp.where})")
    return "\n".join(lines)


def test_no_import_cycle_inside_a_package() -> None:
    modules = find_modules(PACKAGE_DIR)
    imports = all_imports()
    edges: dict[str, set[str]] = {}
    for imp in imports:
        if package_of(imp.importer, modules) == package_of(imp.target, modules):
            edges.setdefault(imp.importer, set()).add(imp.target)
    found = cycles(edges)
    assert not found, (
        "modules import each other in a circle; give the shared names one home below their "
        "users:\n" + "\n".join(describe(c, imports) for c in found)
    )


def test_no_private_name_crosses_a_module_boundary() -> None:
    crossings = [
        f"{imp.where}: {imp.importer} takes {name} from {imp.target}"
        for imp in all_imports()
        for name in imp.names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not crossings, (
        "private names used outside their module; make them public (documented) or move "
        "them to the module that uses them:\n" + "\n".join(crossings)
    )


def test_no_layer_imports_a_layer_above_it() -> None:
    upward = [
        f"{imp.where}: {imp.importer} (layer {layer_of(imp.importer)}) imports "
        f"{imp.target} (layer {layer_of(imp.target)})"
        for imp in all_imports()
        if layer_of(imp.target) > layer_of(imp.importer)
    ]
    assert not upward, (
        "imports run up the layers of docs/design.md (packet -> ports -> acl -> flow -> "
        "applications):\n" + "\n".join(upward)
    )


@pytest.mark.parametrize(
    ("source", "expect"),
    [
        ("from pktflow.flow import compiler\ncompiler._hidden()\n", "_hidden"),
        ("from pktflow.flow.compiler import _hidden\n", "_hidden"),
        ("import pktflow.flow.compiler as c\nc._hidden\n", "_hidden"),
    ],
)
def test_private_name_check_sees_every_spelling(tmp_path: Path, source: str, expect: str) -> None:
    """The checker itself: each way of reaching a private name is reported."""
    root = tmp_path / "pktflow"
    (root / "flow").mkdir(parents=True)
    for rel in ("__init__.py", "flow/__init__.py", "flow/compiler.py"):
        (root / rel).write_text("")
    (root / "flow" / "user.py").write_text(source)
    found = all_imports(root)
    assert any(expect in imp.names and imp.target == "pktflow.flow.compiler" for imp in found)


def test_layers_follow_the_design() -> None:
    """The checker itself: each part sits where docs/design.md puts it."""
    order = ["pktflow", "pktflow.packet.meta", "pktflow.ports.base", "pktflow.acl.table",
             "pktflow.flow.stats", "pktflow.pktgen.engine", "pktflow.cli"]
    assert [layer_of(m) for m in order] == [0, 1, 2, 3, 4, 5, 6]
    assert layer_of("pktflow.flow.cli") == 4 and layer_of("pktflow.tutorial.nat") == 5


def test_cycle_finder_reports_a_circle() -> None:
    """The checker itself: a three-module circle is one component, a chain none."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": {"c"}}) == []
