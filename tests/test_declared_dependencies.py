"""pyproject.toml says what the package needs (issue 19): every third-party module the
package imports belongs to a declared distribution, and the comments name modules
that exist."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import medimg_build

PACKAGE = Path(medimg_build.__file__).parent
PYPROJECT = PACKAGE.parent / "pyproject.toml"


def _normalized(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {_normalized(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in requirements}


def _imported_top_level_modules() -> set[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"medimg_build"}


def test_every_imported_module_is_declared():
    distributions = packages_distributions()
    undeclared = {}
    for module in sorted(_imported_top_level_modules()):
        # A module that is not installed here is named by its own name.
        names = {_normalized(d) for d in distributions.get(module, [module])}
        if not names & _declared():
            undeclared[module] = sorted(names)
    assert undeclared == {}


def test_pyproject_comments_name_real_modules():
    named = re.findall(r"#.*?\b(medimg_build(?:\.\w+)+)", PYPROJECT.read_text())
    missing = [name for name in named if importlib.util.find_spec(name) is None]
    assert missing == []
