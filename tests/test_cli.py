"""The command line: help for every command, the recipe list, inspect."""

from __future__ import annotations

import pytest

from medimg_build.cli import main


@pytest.mark.parametrize("command", [[], ["build"], ["demo"], ["inspect"], ["recipes"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(command + ["--help"])
    assert exit_.value.code == 0
    assert "usage: medimg-build" in capsys.readouterr().out


def test_recipes_lists_modality_organ_labels_layout(capsys):
    assert main(["recipes"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "DX" in lines["nih-chestxray14"] and "chest" in lines["nih-chestxray14"]
    assert "classification" in lines["nih-chestxray14"] and "stack" in lines["nih-chestxray14"]
    assert "segmentation" in lines["volume-folder"] and "volumes" in lines["volume-folder"]


def test_inspect_a_missing_store_is_one_line(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nothing.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nothing.zarr" in err


def test_bad_set_override_is_one_line(tmp_path, capsys):
    code = main(["build", "volume-folder", "--source", str(tmp_path), "--out",
                 str(tmp_path / "o.zarr"), "--set", "harmonize.spacing"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "KEY=VALUE" in err and err.count("\n") == 0


def test_the_package_exports_the_python_entry_points():
    import medimg_build

    for name in ("read_image", "open_store", "build_store", "load_recipe", "MedicalImage"):
        assert callable(getattr(medimg_build, name)), name
    with pytest.raises(AttributeError):
        medimg_build.no_such_thing


def test_recipes_show_prints_the_recipe_as_written_after_its_path(capsys):
    from medimg_build.resources import recipes_dir

    assert main(["recipes", "show", "volume-folder"]) == 0
    printed = capsys.readouterr().out
    path = recipes_dir() / "volume-folder.yaml"
    first, rest = printed.split("\n", 1)
    assert first == f"# volume-folder: {path}"
    assert rest == path.read_text(encoding="utf-8")  # comments included


def test_recipes_show_suggests_the_closest_recipe_name(capsys):
    assert main(["recipes", "show", "volume-foldr"]) == 2
    err = capsys.readouterr().err.strip()
    assert "did you mean volume-folder?" in err and err.count("\n") == 0


@pytest.mark.parametrize("key, suggestion", [
    ("harmonise.spacing", "harmonize.spacing"),
    ("harmonize.spacng", "harmonize.spacing"),
    ("labels.segmentaton.classes", "labels.segmentation.classes"),
    ("source.imags", "source.images"),
])
def test_an_unknown_set_key_suggests_the_closest_real_one(tmp_path, capsys, key, suggestion):
    code = main(["build", "volume-folder", "--source", str(tmp_path), "--out",
                 str(tmp_path / "o.zarr"), "--set", f"{key}=1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert f"--set {key}: a recipe has no key" in err and f"did you mean {suggestion}?" in err
    assert not (tmp_path / "o.zarr").exists()


def test_an_unknown_key_in_a_collections_set_suggests_the_closest_real_one(tmp_path, capsys):
    collection = tmp_path / "collection.yaml"
    collection.write_text("stores:\n  - {recipe: volume-folder, source: ct, out: ct.zarr,\n"
                          "     set: {harmonise.spacing: [1, 1, 1]}}\n")
    assert main(["build-collection", str(collection), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "collection.yaml: set harmonise.spacing: a recipe has no key 'harmonise'" in err
    assert "did you mean harmonize.spacing?" in err and err.count("\n") == 0
