"""domain/ is the pure core: it may import only the standard library and itself."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

DOMAIN = Path(__file__).resolve().parents[2] / "domain"
ALLOWED = frozenset(sys.stdlib_module_names) | {"domain"}


def domain_modules() -> list[Path]:
    return sorted(DOMAIN.rglob("*.py"))


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in `path`, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside its package
                continue
            assert node.module is not None
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def offenders(paths: list[Path]) -> list[str]:
    return [
        f"{path.name}:{line} imports {module}"
        for path in paths
        for line, module in imported_modules(path)
        if module not in ALLOWED
    ]


def test_domain_has_the_modules_to_check() -> None:
    names = {p.name for p in domain_modules()}
    assert {"events.py", "hashing.py", "session.py", "ports.py", "errors.py"} <= names


def test_the_check_catches_third_party_imports_anywhere(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text(
        "from __future__ import annotations\n"
        "import os, json\n"
        "from domain.errors import ValidationError\n"
        "from . import sibling\n"
        "import sqlalchemy.orm\n"
        "def f():\n"
        "    from asyncpg import connect\n"
        "if True:\n"
        "    import litestar as ls\n",
        encoding="utf-8",
    )
    assert offenders([module]) == [
        "bad.py:5 imports sqlalchemy",
        "bad.py:7 imports asyncpg",
        "bad.py:9 imports litestar",
    ]


def test_domain_imports_only_the_standard_library_and_itself() -> None:
    found = offenders(domain_modules())
    assert found == [], "domain/ must stay free of third-party imports:\n" + "\n".join(found)
