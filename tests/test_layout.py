"""The shape of the code (docs/design.md): no import cycle, every module says its job, none
grows past what a newcomer reads in one sitting, click stays in the CLI, and the runtime
never imports the training package."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("screener", "training")
MAX_LINES = 460  # "about 450"


def modules(package: str) -> dict[str, Path]:
    out = {}
    for f in sorted((ROOT / package).rglob("*.py")):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports(name: str, path: Path, known: dict) -> set[str]:
    """The package's modules `path` imports, lazily or not."""
    deps = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            deps.update(subs or [target])
        elif isinstance(node, ast.Import):
            deps.update(a.name for a in node.names)
    return {d for d in deps if d in known and d != name}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, if there is any."""
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep, path + [dep])
                if found:
                    return found
        state[node] = 2
        return None
    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle(package):
    known = modules(package)
    graph = {name: imports(name, path, known) for name, path in known.items()}
    assert cycle(graph) is None, " -> ".join(cycle(graph))


def test_the_checker_finds_a_cycle():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_opens_with_a_docstring_and_stays_small(package):
    for name, path in modules(package).items():
        tree = ast.parse(path.read_text())
        assert ast.get_docstring(tree), f"{path.relative_to(ROOT)} does not say its job"
        lines = len(path.read_text().splitlines())
        assert lines <= MAX_LINES, f"{path.relative_to(ROOT)}: {lines} lines"


def test_only_the_cli_imports_click_and_the_runtime_never_imports_training():
    for name, path in modules("screener").items():
        names = {n for n in ast.walk(ast.parse(path.read_text()))
                 if isinstance(n, (ast.Import, ast.ImportFrom))}
        used = {a.name.split(".")[0] for n in names if isinstance(n, ast.Import) for a in n.names}
        used |= {n.module.split(".")[0] for n in names
                 if isinstance(n, ast.ImportFrom) and n.module and not n.level}
        assert "training" not in used, name
        assert "click" not in used or name.split(".")[:2] == ["screener", "cli"], name
