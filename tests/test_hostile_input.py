"""Issue 14, the parts done so far: YAML that expands (aliases) is refused before it
is expanded, and a build with the built-in pseudonym key says so every time. (The key
kept out of the build lock is tested in test_build_safety.py.)"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medimg_build.catalog import read_catalog_file, read_collection
from medimg_build.cli import main
from medimg_build.errors import MedimgError, RecipeError
from medimg_build.io import read_image
from medimg_build.recipe.model import load_recipe

# "Billion laughs": 9 levels of 9 aliases, 9^9 = 387 million strings from ~1 KB.
LAUGHS = "\n".join(
    ['    l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"    l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 9)])


@pytest.fixture
def source(tmp_path):
    (tmp_path / "src" / "images").mkdir(parents=True)
    image = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    nib.save(nib.Nifti1Image(image, np.eye(4)), tmp_path / "src" / "images" / "a.nii.gz")
    return tmp_path / "src"


def test_a_recipe_with_a_yaml_alias_bomb_is_refused_at_the_first_alias(tmp_path):
    bundled = load_recipe("volume-folder").path
    text = open(bundled).read().replace("source:\n", "source:\n  options:\n" + LAUGHS + "\n", 1)
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text(text)
    with pytest.raises(RecipeError, match=r"bomb.yaml: is not valid YAML at line \d+ "
                                          r"\(YAML aliases \(\*name\) are not accepted"):
        load_recipe(recipe)


def test_a_set_value_with_an_alias_is_refused(source, tmp_path, capsys):
    code = main(["build", "volume-folder", "--source", str(source), "--out",
                 str(tmp_path / "x.zarr"), "--set", "harmonize.spacing=[&s 1, *s, *s]"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--set harmonize.spacing" in err and "aliases (*name) are not accepted" in err
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.parametrize("reader", [read_catalog_file, read_collection])
def test_catalog_and_collection_files_refuse_aliases(tmp_path, reader):
    path = tmp_path / "list.yaml"
    path.write_text("bomb:\n" + LAUGHS + "\nstores: [*l8]\n")
    with pytest.raises(MedimgError, match="aliases"):
        reader(path)


@pytest.mark.filterwarnings("always::medimg_build.privacy.DefaultKeyWarning")
def test_every_build_with_the_default_key_warns(source, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MEDIMG_PSEUDONYM_KEY", raising=False)
    for n in range(2):  # every build, not only the first of a process
        assert main(["build", "volume-folder", "--source", str(source), "--out",
                     str(tmp_path / f"{n}.zarr"), "--quiet"]) == 0
        err = capsys.readouterr().err
        assert err.startswith("medimg-build: warning: no --key or $MEDIMG_PSEUDONYM_KEY")
        assert err.count("\n") == 1
    assert main(["build", "volume-folder", "--source", str(source), "--out",
                 str(tmp_path / "keyed.zarr"), "--quiet", "--key", "secret"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_an_error_quoting_a_huge_value_is_cut_to_a_few_hundred_characters(tmp_path):
    """The schema error quotes the offending value: a 100,000-element list must not
    make a 700 KB line in the terminal and the build report."""
    text = open(load_recipe("volume-folder").path).read()
    huge = "[" + ", ".join(["lol"] * 10**5) + "]"
    recipe = tmp_path / "huge.yaml"
    recipe.write_text(text.replace("\nmodality: CT\n", f"\nmodality: {huge}\n", 1))
    with pytest.raises(RecipeError) as caught:
        load_recipe(recipe)
    message = str(caught.value)
    assert len(message) < 1000, len(message)
    assert "more characters not shown" in message


def test_hostile_names_and_cells_reach_the_terminal_as_one_short_printable_line(tmp_path,
                                                                              capsys):
    """A file name holding a terminal escape sequence or a line break, and a 100,000
    character table cell, are quoted escaped and cut: they cannot rewrite the terminal
    or flood it. (ChestX-ray14's real table header, as in its recipe's fixture.)"""
    hostile = "bad\x1b[2J\nname.nii.gz"
    (tmp_path / hostile).write_bytes(b"not a nifti")
    with pytest.raises(MedimgError) as caught:
        read_image(tmp_path / hostile)
    assert "\x1b" not in str(caught.value) and "\n" not in str(caught.value)
    assert "bad\\x1b[2J\\nname" in str(caught.value)

    source = tmp_path / "nih"
    (source / "images").mkdir(parents=True)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(source / "images" / "x.png")
    (source / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
        "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"
        f"{'a' * 100_000}\x1b[2J.png,No Finding,0,1,50,M,PA,32,32,0.1,0.1,\n"
        "x.png,No Finding,0,2,40,F,PA,32,32,0.1,0.1,\n")
    (source / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
    (source / "train_val_list.txt").write_text("x.png\n")
    (source / "test_list.txt").write_text("")
    main(["build", "nih-chestxray14", "--source", str(source), "--out",
          str(tmp_path / "s.zarr"), "--key", "k", "--quiet"])
    printed = capsys.readouterr()
    assert "skipped" in printed.out
    for line in (printed.out + printed.err).splitlines():
        assert "\x1b" not in line and len(line) < 1200, line[:200]
