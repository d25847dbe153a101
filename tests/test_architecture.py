"""The layering of docs/architecture.md, checked: no import cycle inside kvstore/, and each
data model imports only the store context and the layers below it - never a face, a
server, the command line or another data model. Composed models (sessions) build on the
data models' classes: they import models, never a face or the command layer, and no data
model imports them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "kvstore"
MODELS = {"kvstore.values", "kvstore.logs", "kvstore.artifacts"}
FACES = {
    "kvstore",
    "kvstore.api",
    "kvstore.sync",
    "kvstore.cli",
    "kvstore.commands_cli",
    "kvstore.cli_sessions",
    "kvstore.cli_operations",
    "kvstore.api_operations",
    "kvstore.cli_progress",
    "kvstore.demo",
    "kvstore.portal",
    "kvstore.redis_face",
    "kvstore.redis_core",
    "kvstore.redis_lock",
}
COMMANDS = "kvstore.commands"  # the command layer: above the models, below the faces
COMPOSED = {"kvstore.sessions", "kvstore.records"}  # models of models: above them, below faces


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(0, node.level - 1)):
                base = base.rsplit(".", 1)[0]
            if not node.level:
                base = ""
            target = ".".join(p for p in (base, node.module or "") if p)
            if node.module:  # `from x import y` uses x; `from .. import y` uses only y
                found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {f for f in found if f == "kvstore" or f.startswith("kvstore.")}


def _model_of(module: str) -> str | None:
    return next((m for m in MODELS if module == m or module.startswith(m + ".")), None)


MODULES = sorted(PACKAGE.rglob("*.py"))
MODEL_MODULES = [p for p in MODULES if _model_of(_module(p)) is not None]


@pytest.mark.parametrize("path", MODEL_MODULES, ids=lambda p: _module(p))
def test_a_data_model_imports_only_the_context_and_below(path: Path) -> None:
    model = _model_of(_module(path))
    for target in _imports(path):
        other = _model_of(target)
        assert other in (None, model), f"{_module(path)} imports {target} (another model)"
        assert target not in FACES, f"{_module(path)} imports {target} (a face)"


@pytest.mark.parametrize("path", MODEL_MODULES, ids=lambda p: _module(p))
def test_a_data_model_never_imports_the_command_layer(path: Path) -> None:
    for target in _imports(path):
        assert not target.startswith(COMMANDS), f"{_module(path)} imports {target}"


def _composed(module: str) -> bool:
    return any(module == c or module.startswith(c + ".") for c in COMPOSED)


COMPOSED_MODULES = [p for p in MODULES if _composed(_module(p))]


@pytest.mark.parametrize("path", MODEL_MODULES, ids=lambda p: _module(p))
def test_a_data_model_never_imports_a_composed_model(path: Path) -> None:
    for target in _imports(path):
        assert not _composed(target), f"{_module(path)} imports {target}"


@pytest.mark.parametrize("path", COMPOSED_MODULES, ids=lambda p: _module(p))
def test_a_composed_model_imports_models_never_a_face_or_the_commands(path: Path) -> None:
    for target in _imports(path):
        assert target not in FACES, f"{_module(path)} imports {target} (a face)"
        assert not target.startswith(COMMANDS), f"{_module(path)} imports {target}"


def test_the_composed_list_is_not_vacuous() -> None:
    assert {_module(p) for p in COMPOSED_MODULES} >= {
        "kvstore.sessions.store",
        "kvstore.records.store",
    }


COMMAND_MODULES = [p for p in MODULES if _module(p).startswith(COMMANDS)]


@pytest.mark.parametrize("path", COMMAND_MODULES, ids=lambda p: _module(p))
def test_the_command_layer_imports_no_face(path: Path) -> None:
    """One command layer behind every face: the faces import it, never the reverse."""
    for target in _imports(path):
        assert target not in FACES, f"{_module(path)} imports {target} (a face)"


def test_the_model_list_is_not_vacuous() -> None:
    assert {_module(p) for p in MODEL_MODULES} >= {"kvstore.values", "kvstore.logs.writer"}


def test_no_import_cycles() -> None:
    modules = {_module(p): p for p in MODULES}
    graph = {
        name: {
            t
            for t in _imports(path)
            if t in modules and t != name and modules[t].name != "__init__.py"
        }
        for name, path in modules.items()
    }
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            raise AssertionError(
                "import cycle: " + " -> ".join([*stack[stack.index(node) :], node])
            )
        if node in done:
            return
        for target in graph[node]:
            visit(target, [*stack, node])
        done.add(node)

    for name in graph:
        if modules[name].name != "__init__.py":
            visit(name, [])


OPERATIONS_MODULES = [p for p in MODULES if _module(p).startswith("kvstore.operations")]
KINDS = "kvstore.kinds"  # typed helpers over the public API: above the faces


@pytest.mark.parametrize("path", OPERATIONS_MODULES, ids=lambda p: _module(p))
def test_the_operations_layer_imports_no_face_or_command(path: Path) -> None:
    for target in _imports(path):
        assert target not in FACES, f"{_module(path)} imports {target} (a face)"
        assert not target.startswith(COMMANDS), f"{_module(path)} imports {target}"
        assert not target.startswith(KINDS), f"{_module(path)} imports {target}"


def test_nothing_below_the_typed_helpers_imports_them() -> None:
    assert OPERATIONS_MODULES
    for path in MODULES:
        if _module(path).startswith((KINDS, "kvstore.integrations")):
            continue
        for target in _imports(path):
            assert not target.startswith(KINDS), f"{_module(path)} imports {target}"
