"""``myapp.sessions`` stands on its own: no import of the rest of myapp, no import circle,
its folders on floors that import only downwards, no capability found by ``getattr`` on a
store, and the README's Layout names every module that exists and none that does not."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "myapp" / "sessions"

#: The package's floors, from the top down, each a list of its first-level folders and
#: modules: a module imports only from its own floor and the floors below it. The
#: request's road runs down them (request -> chain -> stores -> database), start-up and
#: operations sit above it, and what every floor uses sits at the bottom.
FLOORS = [
    ["__init__"],  # includeme
    ["migrations"],  # the Alembic revisions (imported by Alembic alone)
    ["operations"],  # purge, ending sessions, /healthz
    ["assemble"],  # options -> stores -> cache -> chain
    ["request"],  # cookie in, load, session, writes, cookie out
    ["chain"],  # which store serves
    ["stores"],  # the stores
    ["database"],  # the engine, request.dbsession, pyramid_tm
    ["options"],  # the settings, parsed once
    ["interfaces", "exceptions", "events", "redact"],  # what every floor uses
]


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


def _imports(name: str, nodes: Iterable[ast.AST], known: set[str]) -> set[str]:
    """The modules the import statements among ``nodes`` of module ``name`` name."""
    is_package = any(k.startswith(name + ".") for k in known)
    imported: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            target = _absolute(name, node, is_package)
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                imported.add(candidate if candidate in known else target)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    return imported


def _top_level_imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """Modules ``name`` imports at its top (type-checking imports too, not in functions)."""
    body = list(tree.body)
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            body.extend(node.body)
    return _imports(name, body, known)


def _all_imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """Every module of the package ``name`` imports, wherever the import stands."""
    return {target for target in _imports(name, ast.walk(tree), known) if target in known}


def _floor(name: str) -> int:
    parts = name.split(".")
    first = parts[2] if len(parts) > 2 else "__init__"
    for index, floor in enumerate(FLOORS):
        if first in floor:
            return index
    raise AssertionError(f"{name} is on no floor: add {first!r} to FLOORS")


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


def test_no_import_runs_up_a_floor():
    modules = _modules()
    known = set(modules)
    upwards = [
        f"{name} (floor {_floor(name)}) imports {target} (floor {_floor(target)})"
        for name, tree in modules.items()
        for target in sorted(_all_imports(name, tree, known))
        if _floor(target) < _floor(name)
    ]
    assert upwards == []


def test_the_floors_name_only_what_exists():
    present = {path.stem if path.suffix else path.name for path in PACKAGE.iterdir()}
    named = {entry for floor in FLOORS for entry in floor}
    assert named - present == set()


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


def _layout_blocks() -> list[str]:
    """The drawings of the README's Layout section: the POST's road, then the files."""
    section = (ROOT / "README.md").read_text().split("\n## Layout\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    return section.split("```")[1::2]


def _layout_paths() -> list[str]:
    """The files and folders of ``myapp/sessions/`` that the README's Layout names, each
    on a line of its own, indented four spaces per folder level."""
    block = next(b for b in _layout_blocks() if "\nmyapp/sessions/ " in b).splitlines()
    start = next(i for i, line in enumerate(block) if line.startswith("myapp/sessions/ "))
    stack = ["myapp/sessions/"]
    paths = []
    for line in block[start + 1 :]:
        if line and not line.startswith(" "):
            break  # the next top-level entry: the package's part is over
        stripped = line.lstrip(" ")
        depth, rest = divmod(len(line) - len(stripped), 4)
        entry = stripped.split(" ", 1)[0]
        if rest or not 1 <= depth <= len(stack) or not entry.endswith((".py", "/")):
            continue  # a description's second line
        del stack[depth:]
        paths.append("".join(stack) + entry)
        if entry.endswith("/"):
            stack.append(entry)
    return paths


def _defines_something(path: Path) -> bool:
    """Whether a module holds code of its own (not only a docstring and re-exports)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__all__":
            continue
        return True
    return False


def test_the_readme_layout_names_every_module_and_only_modules_that_exist():
    named = _layout_paths()
    missing = [path for path in named if not (ROOT / path).exists()]
    assert missing == []
    modules = [
        str(path.relative_to(ROOT))
        for path in sorted(PACKAGE.rglob("*.py"))
        if "migrations" not in path.parts and _defines_something(path)
    ]
    assert [path for path in modules if path not in named] == []


def test_the_readme_drawing_of_a_post_names_modules_that_exist():
    road = _layout_blocks()[0]
    named = set(re.findall(r"[a-z_/]+\.py", road))
    assert len(named) >= 12
    assert [name for name in sorted(named) if not (PACKAGE / name).exists()] == []
