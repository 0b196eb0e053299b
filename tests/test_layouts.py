"""The store layouts as classes (``medimg_build.store.layouts``): found by name, each
holding its writer options and whether its cases share one array, and the only place
that knows the layouts by name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import medimg_build
from medimg_build.errors import StoreError
from medimg_build.store.layouts import layout_named
from medimg_build.store.schema import LAYOUTS


def test_each_layout_is_found_by_its_name():
    assert [layout_named(name).name for name in LAYOUTS] == list(LAYOUTS)
    assert layout_named("stack").cases_share_arrays
    assert not layout_named("volumes").cases_share_arrays


@pytest.mark.parametrize("name", ["pile", ["stack"], None])
def test_an_unknown_layout_is_refused_naming_the_store(name):
    with pytest.raises(StoreError, match=r"out\.zarr: unknown store layout .*use one of "
                                         r"stack, volumes"):
        layout_named(name, "out.zarr")


def test_each_layout_takes_its_own_options():
    assert layout_named("stack").options("s.zarr", 4, 1) == {"cases_per_shard": 4}
    assert layout_named("volumes").options("v.zarr", 4, 3) == {"pyramid_levels": 3}
    with pytest.raises(StoreError, match="a multiscale pyramid needs the volumes layout"):
        layout_named("stack").options("s.zarr", None, 2)


def _layout_name_comparisons(path: Path) -> list[str]:
    """Each ``x == "stack"`` / ``!= "volumes"`` (either side) in the file at ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Compare) and any(
                isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) and o.value in LAYOUTS for o in operands):
                found.append(f"{path}:{node.lineno}")
    return found


def test_no_code_outside_the_layouts_compares_layout_names():
    """What differs between layouts is asked of the layout (``layout_named(name)``),
    never decided by comparing its name."""
    package = Path(medimg_build.__file__).parent
    found = [site for path in sorted(package.rglob("*.py"))
             if path.name != "layouts.py" for site in _layout_name_comparisons(path)]
    assert found == []
