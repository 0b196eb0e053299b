"""A plain install works: the recipes and schemas ship inside the package, the
checkout's top-level recipes/ and schema/ are those same folders, and --version names
the installed version."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

import medimg_build
from medimg_build.cli import main

from check_wheel import ROOT, check_wheel


def test_a_wheel_installed_outside_the_checkout_works(tmp_path):
    check_wheel(ROOT, tmp_path)


@pytest.mark.parametrize("folder", ["recipes", "schema"])
def test_top_level_data_folders_are_the_packaged_ones(folder):
    packaged = Path(medimg_build.__file__).parent / folder
    assert any(packaged.iterdir())
    assert (ROOT / folder).resolve() == packaged.resolve()


def test_version_names_the_installed_distribution(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"medimg-build {version('medimg-build')}\n"
    assert version("medimg-build") == medimg_build.__version__
