"""Public seams: what one part of ladder uses of another is public.

A module is private (a leading underscore) or says what it exports (``__all__``); no module
imports a private name, or a private module from outside that module's package. What is
shared is promoted to a public name with a docstring, so changing a private helper never
breaks a far caller.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "ladder"


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def package_of(path: Path) -> str:
    """``ladder.models`` for src/ladder/models/hf.py; ``ladder`` for src/ladder/cost.py."""
    return ".".join(("ladder", *path.relative_to(SRC).parent.parts))


def test_every_public_module_says_what_it_exports() -> None:
    missing = []
    for path in modules():
        if path.name.startswith("_"):
            continue  # private modules and package __init__ files
        tree = ast.parse(path.read_text(encoding="utf-8"))
        declared = any(
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            for node in tree.body
        )
        if not declared:
            missing.append(str(path.relative_to(SRC)))
    assert missing == []


def test_no_private_name_or_module_is_imported_across_packages() -> None:
    found = []
    for path in modules():
        here = package_of(path)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("ladder"):
                continue
            parts = (node.module or "").split(".")
            private = [i for i, part in enumerate(parts) if part.startswith("_")]
            owner = ".".join(parts[: private[0]]) if private else ""
            if private and here != owner and not here.startswith(owner + "."):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {node.module}")
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}: {alias.name}")
    assert found == []
