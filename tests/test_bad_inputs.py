"""The bad-input corpus (tests/bad_inputs.py): every malformed input gets its own
specific one-line error naming its file, every good case beside them is built, and
nothing is written outside the output store."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import bad_inputs
from medimg_build import open_store
from medimg_build.cli import main
from medimg_build.errors import MedimgError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

# Words of the last-resort handlers (parallel._attempt, io.read_image): a corpus input that
# reaches them has no specific error yet, which is a failure of this test.
GENERIC = re.compile(r"unexpected (failure|[A-Z]\w*(Error|Exception|Warning)\b)")
PATH = re.compile(r"\S*/\S*")


def _snapshot(root: Path, store: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` but the store: path -> (size, mtime)."""
    found = {}
    for directory, folders, files in os.walk(root):
        if Path(directory) == store.parent and store.name in folders:
            folders.remove(store.name)
        for name in folders + files:
            path = Path(directory) / name
            stat = path.lstat()
            found[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return found


def _problems(entry: bad_inputs.Entry, message: str | None) -> list[str]:
    """What is wrong with ``message`` as the error of ``entry`` (empty: nothing)."""
    if message is None:
        return [f"{entry.name}: no {entry.outcome} entry {entry.key!r} in the report"]
    found = []
    if "\n" in message:
        found.append("is not one line")
    if GENERIC.search(message):
        found.append("is the generic last-resort error")
    where = entry.key if entry.outcome == "skipped" else message
    if entry.names not in where:
        found.append(f"does not name {entry.names!r}")
    problem = PATH.sub("<path>", message)  # words must be in the text, not in a file name
    found += [f"lacks {word!r}" for word in entry.words if word not in problem]
    return [f"{entry.name}: {p}: {message}" for p in found]


def _check_source(tmp_path: Path, kind: str, recipe_name: str, overrides: dict, maker):
    source, out = tmp_path / kind, tmp_path / f"{kind}.zarr"
    good, entries = maker(source)
    before = _snapshot(tmp_path, out)
    report = build_store(load_recipe(recipe_name).with_overrides(overrides), source, out,
                         progress=False)
    assert _snapshot(tmp_path, out) == before, "files written outside the store"

    problems = []
    for entry in entries:
        outcome = report.failed if entry.outcome == "failed" else report.skipped
        problems += _problems(entry, outcome.get(entry.key))
    assert not problems, "\n".join(problems)
    # Exactly the corpus failed or was skipped: no good case is collateral damage.
    assert sorted(report.built) == sorted(good)
    assert set(report.failed) == {e.key for e in entries if e.outcome == "failed"}
    assert set(report.skipped) == {e.key for e in entries if e.outcome == "skipped"}

    store = open_store(out)
    built = store.cases[store.cases["status"] == "built"]["case_id"]
    assert sorted(built) == sorted(good)
    for case_id in good:
        assert store.read_image(case_id).array.size > 0
    assert set(store.attrs["build_report"]["failed"]) == set(report.failed)
    return entries


def test_bad_volumes_fail_their_case_only(tmp_path):
    entries = _check_source(tmp_path, "volumes", "volume-folder",
                            bad_inputs.volume_overrides(), bad_inputs.make_volumes)
    assert len(entries) >= 20


def test_bad_pictures_and_rows_fail_their_case_only(tmp_path):
    entries = _check_source(tmp_path, "chest", "nih-chestxray14",
                            bad_inputs.chest_overrides(), bad_inputs.make_chest)
    assert len(entries) >= 10


def test_bad_sources_stop_the_build_with_one_line_naming_the_file(tmp_path):
    entries = bad_inputs.make_source_level(tmp_path / "sources")
    problems = []
    for entry in entries:
        out = tmp_path / f"{entry.name}.zarr"
        before = _snapshot(tmp_path, out)
        try:
            recipe = load_recipe(entry.recipe)
            build_store(recipe.with_overrides(entry.overrides), entry.key, out,
                        progress=False)
        except MedimgError as error:
            problems += _problems(entry, str(error))
        except Exception as error:  # noqa: BLE001 - a crash is what this test looks for
            problems.append(f"{entry.name}: crashed with {type(error).__name__}: {error}")
        else:
            problems.append(f"{entry.name}: built without an error")
        if _snapshot(tmp_path, out) != before or out.exists():
            problems.append(f"{entry.name}: wrote files although the source is refused")
    assert not problems, "\n".join(problems)


def test_the_corpus_has_at_least_30_inputs(tmp_path):
    entries = bad_inputs.make_volumes(tmp_path / "v")[1] + \
        bad_inputs.make_chest(tmp_path / "c")[1] + \
        bad_inputs.make_source_level(tmp_path / "s")
    assert len(entries) >= 30
    assert len({e.name for e in entries}) == len(entries)


def test_cli_reports_the_failures_and_exits_non_zero(tmp_path, capsys):
    good, entries = bad_inputs.make_volumes(tmp_path / "src")
    code = main(["build", "volume-folder", "--source", str(tmp_path / "src"),
                 "--out", str(tmp_path / "v.zarr"), "--quiet",
                 "--set", "harmonize.spacing=[2,2,2.5]",
                 "--set", 'labels.segmentation.classes={"0": background, "1": organ}'])
    printed = capsys.readouterr()
    assert code == 1
    for entry in entries:
        if entry.outcome == "failed":
            assert f"failed {entry.key}: " in printed.out + printed.err, entry.name


@pytest.mark.parametrize("name", ["recipe_unknown_keys", "recipe_binary"])
def test_cli_recipe_errors_are_one_line(tmp_path, capsys, name):
    entry = next(e for e in bad_inputs.make_source_level(tmp_path / "s") if e.name == name)
    code = main(["build", str(entry.recipe), "--source", entry.key,
                 "--out", str(tmp_path / "o.zarr"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and entry.names in err
    assert all(word in err for word in entry.words)
