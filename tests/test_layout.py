"""The layout rules of ``docs/architecture.md``, checked on the source with ``ast``.

* Only a ``tap.py`` (and the settings machinery) imports the settings catalogue.
* Only a ``tap.py`` (and the settings machinery) takes the options dict: a parameter
  named ``values`` or ``options`` that is indexed or read with ``.get``.
* Only a ``tap.py`` imports the global reactor.
* ``ct/common`` imports no component package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CT = Path(__file__).resolve().parent.parent / "ct"
COMPONENTS = ("ct.edge", "ct.locator", "ct.turn", "ct.dashboard")
SETTINGS_MACHINERY = {"ct/settings.py", "ct/common/settings.py", "ct/common/catalog.py"}

# Modules other engineers are moving off the options dict in the same step (issue 10);
# the lead removes a mark once its branch is merged (strict: a fixed module fails here).


def _relative(path: Path) -> str:
    return path.relative_to(CT.parent).as_posix()


def _modules() -> list[str]:
    return sorted(_relative(p) for p in CT.rglob("*.py"))


def _tree(module: str) -> ast.Module:
    return ast.parse((CT.parent / module).read_text(), module)


def _imported(tree: ast.Module) -> set[str]:
    """Every module name an import statement names, ``from a import b`` as ``a`` and ``a.b``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _is_catalogue(name: str) -> bool:
    parts = name.split(".")
    return (name in ("ct.settings", "ct.common.catalog")
            or (len(parts) == 3 and parts[0] == "ct" and parts[2] == "settings"))


def _exempt(module: str) -> bool:
    return (module.endswith("/tap.py") or module in SETTINGS_MACHINERY
            or (module.count("/") == 2 and module.endswith("/settings.py")))


def _reads_options(tree: ast.Module) -> list[str]:
    """Functions with a ``values``/``options`` parameter used like the options dict."""
    found = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        params = {a.arg for a in fn.args.args + fn.args.kwonlyargs} & {"values", "options"}
        for node in ast.walk(fn):
            target = None
            if isinstance(node, ast.Subscript):
                target = node.value
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "get"):
                target = node.func.value
            if isinstance(target, ast.Name) and target.id in params:
                found.append(f"{fn.name}({target.id})")
                break
    return found


def _problems(module: str) -> list[str]:
    tree = _tree(module)
    problems = []
    if not _exempt(module):
        problems += [f"imports the settings catalogue {name}"
                     for name in sorted(_imported(tree)) if _is_catalogue(name)]
        problems += [f"reads the options dict in {where}" for where in _reads_options(tree)]
    if not module.endswith("/tap.py") and "twisted.internet.reactor" in _imported(tree):
        problems.append("imports the global reactor")
    if module.startswith("ct/common/"):
        problems += [f"ct/common imports the component {name}"
                     for name in sorted(_imported(tree))
                     if any(name == c or name.startswith(c + ".") for c in COMPONENTS)]
    return problems


@pytest.mark.parametrize("module", _modules())
def test_settings_stay_in_the_taps(module):
    assert _problems(module) == []


def test_the_checks_catch_what_they_should():
    tree = ast.parse("from ct.edge import settings\n"
                     "def f(values):\n    return values['x']\n"
                     "def g(options, other):\n    return options.get('y'), other['z']\n")
    assert "ct.edge.settings" in _imported(tree)
    global_reactor = ast.parse("from twisted.internet import reactor")
    assert "twisted.internet.reactor" in _imported(global_reactor)
    assert _is_catalogue("ct.edge.settings") and _is_catalogue("ct.common.catalog")
    assert not _is_catalogue("ct.edge.server")
    assert _reads_options(tree) == ["f(values)", "g(options)"]
    assert _exempt("ct/edge/tap.py") and _exempt("ct/turn/settings.py")
    assert not _exempt("ct/edge/server.py")

