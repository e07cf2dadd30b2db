"""docs/architecture.md names every module, and nothing that is not there.

A module is *named* by an entry: a bullet (``- `cubecut.bulk.plan`: ...``) or a heading
(``### `cubecut.bulk`: ...``, which names the package's ``__init__``) whose first code span
is its dotted name. Every other dotted name in a code span (``cubecut.storage_obstore.put_object``:
a module, then a name bound at its top level), every path in a code span (``tests/...``,
``infra/...``) and every relative link must exist. An arrow between two functions
(``cubecut.cutout.reader.open_cube`` → ``cubecut.storage_obstore.open_object`` in code spans, as the
data-source table says which backend serves what) must be a call: the first function's body
uses the second, imported from its module. Failure messages list exactly the names to add,
remove or rename.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "architecture.md"
#: Source tree -> the package name it installs as (pyproject.toml's package-dir).
TREES = {"layers/cubecut": "cubecut", "layers/cubecut_app": "cubecut_app",
         "functions": "cubecut_functions", "infra": "cubecut_infra"}
PACKAGES = "|".join(TREES.values())
ENTRY = re.compile(rf"^(?:#+|-)\s+`((?:{PACKAGES})(?:\.\w+)*)`", re.M)
#: A code span that is a path in the repository: starts with one of its top-level folders.
REPO_PATH = re.compile(r"`((?:layers|functions|infra|tests|benchmarks|docs)/[\w./*-]*)`")
#: A code span that is a dotted name in one of the packages (a module, or a module's name).
DOTTED = re.compile(rf"`((?:{PACKAGES})(?:\.\w+)+)`")
#: "`caller` → `callee`": a call the doc states.
ARROW = re.compile(rf"`((?:{PACKAGES})(?:\.\w+)+)` → `((?:{PACKAGES})(?:\.\w+)+)`")
LINK = re.compile(r"\]\(([^)#:]+)(?:#[^)]*)?\)")


def module_files() -> dict[str, Path]:
    """Every module under the four trees by dotted name (a package by its own name)."""
    names = {}
    for tree, package in TREES.items():
        for path in (ROOT / tree).rglob("*.py"):
            parts = list(path.relative_to(ROOT / tree).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            names[".".join([package, *parts])] = path
    return names


def modules_in_tree() -> set[str]:
    return set(module_files())


def top_level_names(path: Path) -> set[str]:
    """Names a module binds at its top level (also under ``if``/``try``), and its ``__all__``."""
    names: set[str] = set()
    body = list(ast.parse(path.read_text()).body)
    while body:
        node = body.pop()
        if isinstance(node, (ast.If, ast.Try)):
            body += node.body + node.orelse + getattr(node, "finalbody", [])
            body += [n for handler in getattr(node, "handlers", []) for n in handler.body]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
                names.update(n.value for n in ast.walk(node.value)
                             if isinstance(n, ast.Constant) and isinstance(n.value, str))
    return names


def unresolved(dotted: str, modules: dict[str, Path]) -> bool:
    """Whether ``dotted`` is neither a module nor a module followed by one of its names."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        module = ".".join(parts[:cut])
        if module in modules:
            return cut < len(parts) and parts[cut] not in top_level_names(modules[module])
    return True


def modules_in_doc(text: str) -> set[str]:
    return set(ENTRY.findall(text))


def test_every_module_is_named_in_the_doc() -> None:
    missing = sorted(modules_in_tree() - modules_in_doc(DOC.read_text()))
    assert not missing, f"modules not named in docs/architecture.md (add an entry for each): {missing}"


def test_every_module_the_doc_names_exists() -> None:
    extra = sorted(modules_in_doc(DOC.read_text()) - modules_in_tree())
    assert not extra, f"docs/architecture.md names modules that do not exist (remove or rename): {extra}"


def test_every_dotted_name_the_doc_uses_exists() -> None:
    modules = module_files()
    wrong = sorted({name for name in DOTTED.findall(DOC.read_text()) if unresolved(name, modules)})
    assert not wrong, f"docs/architecture.md names things that do not exist (module, then a name in it): {wrong}"


def split_module(dotted: str, modules: dict[str, Path]) -> tuple[str, list[str]]:
    """``dotted`` as (its longest module prefix, the names after it)."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        if ".".join(parts[:cut]) in modules:
            return ".".join(parts[:cut]), parts[cut:]
    raise KeyError(dotted)


def imported_from(module: str, path: Path, tree: ast.Module) -> dict[str, str]:
    """Names bound by ``from X import name`` in ``tree`` -> X as an absolute module name."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            source = ".".join([*base, *([node.module] if node.module else [])])
            found.update({alias.asname or alias.name: source for alias in node.names})
    return found


def call_is_missing(caller: str, callee: str, modules: dict[str, Path]) -> bool:
    """Whether function ``caller`` does not use ``callee`` imported from its module."""
    module, names = split_module(caller, modules)
    callee_module, callee_names = split_module(callee, modules)
    tree = ast.parse(modules[module].read_text())
    function = next((node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                     and names == [node.name]), None)
    if function is None or len(callee_names) != 1:
        return True
    used = {node.id for node in ast.walk(function) if isinstance(node, ast.Name)}
    return callee_names[0] not in used or imported_from(module, modules[module], tree).get(callee_names[0]) != callee_module


def test_every_call_the_doc_states_is_in_the_code() -> None:
    modules = module_files()
    arrows = ARROW.findall(DOC.read_text())
    wrong = sorted(f"{caller} → {callee}" for caller, callee in arrows if call_is_missing(caller, callee, modules))
    assert arrows, "no calls found: the pattern no longer matches the doc"
    assert not wrong, f"docs/architecture.md states calls the code does not make: {wrong}"


def test_every_path_the_doc_names_exists() -> None:
    text = DOC.read_text()
    paths = set(REPO_PATH.findall(text))
    missing = sorted(p for p in paths if not any(ROOT.glob(p.rstrip("/"))))
    links = set(LINK.findall(text))
    missing += sorted(link for link in links if not (DOC.parent / link).exists())
    assert paths, "no repository paths found: the pattern no longer matches the doc"
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_the_entry_pattern_reads_bullets_and_headings() -> None:
    sample = "### `cubecut.bulk`: bulk\n\n- `cubecut.bulk.plan`: plan, see `cubecut.storage`\nprose `cubecut.x`\n"
    assert modules_in_doc(sample) == {"cubecut.bulk", "cubecut.bulk.plan"}
