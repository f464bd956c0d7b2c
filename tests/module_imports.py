"""What a module imports, read from its source: for the tests that keep a decision core pure."""
from __future__ import annotations

import ast
from pathlib import Path
from types import ModuleType


def imported_packages(module: ModuleType) -> set[str]:
    """The top-level packages `module` imports anywhere in its file (`import a.b`, `from a import b`
    give "a"; relative imports are left out)."""
    tree = ast.parse(Path(module.__file__ or "").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    return imported
