"""Package layout: no import circles between ``wfm`` modules, and a registry that imports no model."""

from __future__ import annotations

import ast
from pathlib import Path

WFM = Path(__file__).resolve().parents[1] / "wfm"


def _module(path: Path) -> str:
    parts = path.relative_to(WFM.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, everywhere: bool) -> set[str]:
    """``wfm`` modules that ``path`` imports: at module level, or anywhere (also inside functions)."""
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if everywhere else iter(tree.body)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("wfm")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("wfm") and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _graph(everywhere: bool) -> dict[str, set[str]]:
    files = {_module(p): p for p in WFM.rglob("*.py")}
    return {m: {i for i in _imports(p, everywhere) if i in files and i != m} for m, p in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle found by a depth-first search (each reported once, from its smallest module)."""
    out, seen = [], set()

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == path[0]:
                key = frozenset(path)
                if key not in seen:
                    seen.add(key)
                    out.append(path + [nxt])
            elif nxt not in path and nxt > path[0]:
                visit(nxt, path + [nxt])

    for start in sorted(graph):
        visit(start, [start])
    return out


def test_no_import_circles_between_modules():
    # Package __init__ files re-export their modules by design (timm's layout); a circle through
    # one of them is a package importing its own child, not two modules needing each other.
    graph = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in _graph(everywhere=True).items()}
    circles = [c for c in _cycles(graph) if not any(WFM.joinpath(*x.split(".")[1:], "__init__.py").exists()
                                                    for x in c)]
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles[:5])


def test_the_registry_imports_no_model():
    assert not {i for i in _imports(WFM / "models" / "registry.py", everywhere=True) if i.startswith("wfm.models")}
    from wfm.models import list_models  # the package registers the built-in models

    assert {"mae_tiny", "causal_tiny"} <= set(list_models())
