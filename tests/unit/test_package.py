"""``myapp.sessions`` stands on its own: no import of the rest of myapp, no import circle,
no capability found by ``getattr`` on a store."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "myapp" / "sessions"


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _top_level_imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """Modules ``name`` imports at its top (type-checking imports too, not in functions)."""
    is_package = any(k.startswith(name + ".") for k in known)
    body = list(tree.body)
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            body.extend(node.body)
    imported: set[str] = set()
    for node in body:
        if isinstance(node, ast.ImportFrom):
            target = _absolute(name, node, is_package)
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                imported.add(candidate if candidate in known else target)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    return imported


def test_the_package_imports_nothing_else_of_myapp():
    outside = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and not node.level:
                targets = [node.module or ""]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                if target.startswith("myapp") and not target.startswith("myapp.sessions"):
                    outside.append(f"{name}: {target}")
    assert outside == []


def test_the_package_has_no_import_circle():
    modules = _modules()
    known = set(modules)
    graph = {
        name: {dep for dep in _top_level_imports(name, tree, known) if dep in known}
        for name, tree in modules.items()
    }

    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for dep in graph[node]:
                if dep == start:
                    return [*path, dep]
                # A package imports its submodules' names; only a submodule going back
                # up to a package that imports it closes a circle.
                if dep not in seen:
                    seen.add(dep)
                    stack.append((dep, [*path, dep]))
        return None

    circles = [c for name in graph if (c := cycle_from(name)) and len(c) > 2]
    assert circles == []


def test_no_capability_of_a_store_is_found_by_getattr():
    probes = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and node.args
                and "store" in ast.unparse(node.args[0])
            ):
                probes.append(f"{name}: {ast.unparse(node)}")
    assert probes == []
