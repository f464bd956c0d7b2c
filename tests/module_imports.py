"""What a module imports, read from its source (nothing is imported): for the tests that keep the
decision cores pure (tests/test_purity.py) and the rooms' import rules."""
from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
PROJECT = ("swarm", "network", "consensus", "main")


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes inside `if TYPE_CHECKING:` blocks (never run)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def module_path(name: str) -> Path | None:
    """The file of project module `name` ("network.wire.codec"), or None if it is not ours."""
    if name.split(".")[0] not in PROJECT:
        return None
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def runtime_imports(path: Path) -> set[str]:
    """Dotted names a file imports when it runs (anywhere in it, functions included; imports
    only for type checkers left out): `import a.b` gives "a.b", `from a.b import c` gives "a.b"
    and, when c is a module of ours, "a.b.c"."""
    tree = _tree(path)
    skipped = _type_checking_only(tree)
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names
                      if module_path(f"{node.module}.{a.name}") is not None}
    return names


def imported_packages(module: ModuleType) -> set[str]:
    """The top-level packages `module` imports anywhere in its file (`import a.b`, `from a import b`
    give "a"; relative imports are left out)."""
    return {name.split(".")[0] for name in runtime_imports(Path(module.__file__ or ""))}


def reachable(start: str) -> dict[str, list[str]]:
    """Every module imported at run time from project module `start`, transitively through our
    own modules (with their parent packages), each with the chain of imports that reaches it."""
    chains: dict[str, list[str]] = {start: [start]}
    todo = [start]
    while todo:
        name = todo.pop()
        path = module_path(name)
        if path is None:
            continue
        parts = name.split(".")
        parents = {".".join(parts[:i]) for i in range(1, len(parts))}
        for imported in sorted(runtime_imports(path) | parents):
            if imported not in chains:
                chains[imported] = [*chains[name], imported]
                todo.append(imported)
    return chains
