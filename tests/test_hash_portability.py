"""One hash wherever a store is built (issue 13, item 10): the same source, copied to
two places and named four ways on the command line, gives one content hash, and no
string of the store or of its QC report tells where the source was, in which folder,
on which host or for which user.

Each source holds a case that fails (its error text is stored) and a file that is
skipped; the DICOM tree also holds a byte-identical copy of a slice ("duplicate of
<path>"), and the volume folder an image that is a symbolic link out of the tree."""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import socket
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

from medimg_build import open_store
from medimg_build.cli import main

from fixtures import dicom_tree as dicom_tree_fixture
from fixtures import volume_folder as volume_folder_fixture


# Background only: the masks' 1s fail their cases, whose errors the store keeps.
DECLARED = ("--set", 'labels.segmentation.classes={"0": background}')


def volume_source(root: Path, outside: Path) -> None:
    """The volume-folder fixture: two of its cases fail (their masks hold a value the
    recipe does not declare: DECLARED); plus a hidden file (skipped) and an image that is a link
    to a file outside the tree."""
    volume_folder_fixture.make(root)
    (root / "images" / ".hidden.nii.gz").write_bytes(b"")
    outside.mkdir()
    shutil.copy(root / "images" / "case002.nii.gz", outside / "outside_target.nii.gz")
    (root / "images" / "case003.nii.gz").symlink_to(outside / "outside_target.nii.gz")


def dicom_source(root: Path, shared_data: Path) -> None:
    """The DICOM-tree fixture (real CT; pydicom's CT2 fails on its slice gap; a text
    file and DICOMDIRs are skipped) with a byte-identical copy of a CT5N slice."""
    dicom_tree_fixture.make(root, shared_data)
    (root / "patient-B").mkdir()
    shutil.copy(root / "archive" / "98892001" / "CT5N" / "2062", root / "patient-B" / "2062")


def build(recipe: str, source: str, out: Path, cwd: Path, fmt: str, monkeypatch,
          *options: str) -> str:
    """Build from ``cwd`` with ``--source`` spelled as given; the store's content hash."""
    monkeypatch.chdir(cwd)
    assert main(["build", recipe, "--source", source, "--out", str(out), "--format", fmt,
                 "--allow-failures", *options]) == 0
    assert main(["verify", str(out)]) == 0
    return open_store(out).attrs["manifest"]["content_sha256"]


def strings_of(value, found: list[str]) -> list[str]:
    """Every text in a decoded value, JSON texts (table cells) decoded too."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        found.append(value)
        if value[:1] in "[{":
            try:
                strings_of(json.loads(value), found)
            except ValueError:
                pass
    elif isinstance(value, dict):
        for key, item in value.items():
            strings_of(key, found)
            strings_of(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            strings_of(item, found)
    elif isinstance(value, np.ndarray):
        strings_of(value.tolist(), found)
    return found


def zarr_strings(path: Path) -> list[str]:
    """Every zarr.json and other JSON file of the store (the build journal too), every
    attribute and every text array, the manifest and the case table among them."""
    found: list[str] = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        found.append(file.relative_to(path).as_posix())
        if file.suffix == ".json":
            strings_of(json.loads(file.read_text()), found)
        if file.suffix == ".parquet":  # the case table's copy (store/table_arrow.py)
            table = pq.read_table(file)
            strings_of(table.to_pylist(), found)
            strings_of(dict(table.schema.metadata or {}), found)

    def visit(group: zarr.Group) -> None:
        strings_of(dict(group.attrs), found)
        for _, array in group.arrays():
            strings_of(dict(array.attrs), found)
            if array.dtype.kind in "OTUS":
                strings_of(array[...], found)
        for _, child in group.groups():
            visit(child)

    visit(zarr.open_group(path, mode="r", use_consolidated=False))
    return found


def hdf5_strings(path: Path) -> list[str]:
    """Every name, attribute and text dataset of an HDF5 store."""
    found: list[str] = []

    def visit(name: str, node) -> None:
        found.append(name)
        strings_of({k: v for k, v in node.attrs.items() if not isinstance(v, h5py.Reference)},
                   found)
        if isinstance(node, h5py.Dataset) and node.dtype.kind in "OSU":
            strings_of(node.asstr()[...] if node.dtype.kind != "U" else node[...], found)

    with h5py.File(path, "r") as file:
        strings_of(dict(file.attrs), found)
        file.visititems(visit)
    return found


def leaks(strings: list[str], paths: list[str], words: list[str]) -> list[tuple[str, str]]:
    """(needle, text) for every text holding a path or folder name (anywhere) or a host
    or user name (as a word: the host may be two letters long)."""
    found = []
    for text in strings:
        found += [(p, text) for p in paths if p in text]
        found += [(w, text) for w in words if re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])",
                                                       text)]
    return found


def identity_needles(tmp_path: Path, folders: list[str]) -> tuple[list[str], list[str]]:
    paths = sorted({str(tmp_path), os.path.realpath(tmp_path)}) + folders
    return paths, [socket.gethostname(), getpass.getuser()]


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_volume_folder_one_hash_and_no_path_host_or_user(tmp_path, monkeypatch, fmt):
    site = tmp_path / "site_a"
    source = site / "my_ct"
    volume_source(source, tmp_path / "outside")
    copy = tmp_path / "elsewhere" / "other_name"
    shutil.copytree(source, copy)  # links become files: the same bytes, the same names
    (tmp_path / "linked").symlink_to(source)
    (tmp_path / "cwd").mkdir()
    suffix = ".zarr" if fmt == "zarr" else ".h5"
    outs = [tmp_path / "out" / f"store{i}{suffix}" for i in range(5)]
    spellings = [("my_ct", site), (str(source), tmp_path), ("../site_a/my_ct/", tmp_path / "cwd"),
                 ("./linked/.", tmp_path), (str(copy), tmp_path / "cwd")]
    hashes = {build("volume-folder", spelled, out, cwd, fmt, monkeypatch, *DECLARED)
              for (spelled, cwd), out in zip(spellings, outs)}
    assert len(hashes) == 1, hashes

    store = open_store(outs[0])
    report = store.attrs["build_report"]
    assert report["built"] == 2 and len(report["failed"]) == 2  # the failures are stored
    assert report["failed"]["case000"].startswith("labels/case000.nii.gz: mask values")
    assert store.cases.set_index("case_id").loc["case003", "source_files"] == \
        ["images/case003.nii.gz"]  # the link as found in the tree, not its target
    paths, words = identity_needles(tmp_path, ["my_ct", "other_name", "site_a", "linked",
                                               "outside_target"])
    for out in outs:
        strings = zarr_strings(out) if fmt == "zarr" else hdf5_strings(out)
        assert any("labels/case001.nii.gz: mask values" in s for s in strings)
        assert leaks(strings, paths, words) == []

    if fmt == "zarr":  # the QC report, of a store named by its absolute path
        assert main(["report", str(outs[3]), "--out", str(tmp_path / "qc")]) == 0
        html = (tmp_path / "qc" / "index.html").read_text()
        assert "labels/case000.nii.gz" in html
        # The page less its fixed stylesheet (CSS's ":root" is no user's name).
        page = re.sub(r"<style>.*?</style>", "", html, flags=re.S)
        assert leaks([page], paths, words) == []


def test_dicom_tree_one_hash_and_no_path_host_or_user(tmp_path, monkeypatch, shared_data):
    source = tmp_path / "site_a" / "my_tree"
    dicom_source(source, shared_data)
    copy = tmp_path / "elsewhere" / "other_tree"
    shutil.copytree(source, copy)
    (tmp_path / "linked").symlink_to(source)
    outs = [tmp_path / "out" / f"tree{i}.zarr" for i in range(3)]
    spellings = [("my_tree", source.parent), ("linked/", tmp_path), (str(copy), tmp_path)]
    hashes = {build("dicom-tree", spelled, out, cwd, "zarr", monkeypatch)
              for (spelled, cwd), out in zip(spellings, outs)}
    assert len(hashes) == 1, hashes

    skipped = open_store(outs[0]).attrs["build_report"]["skipped"]
    assert any(reason == "duplicate of archive/98892001/CT5N/2062 (identical file)" for reason in skipped)
    paths, words = identity_needles(tmp_path, ["my_tree", "other_tree", "site_a", "linked",
                                               str(shared_data)])
    for out in outs:
        strings = zarr_strings(out)
        # The failure is stored, its series folder (77654033/CT2: a PatientID) called
        # by the case id.
        assert any(s.startswith("series-") and "'Routine Brain' CT: missing slice" in s
                   for s in strings)
        assert leaks(strings, paths, words) == []


def test_stored_text_makes_paths_relative_and_keeps_other_text(tmp_path):
    from medimg_build.recipe.paths import source_root, stored_text

    (tmp_path / "My Data" / "ct").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "My Data")
    root = source_root(tmp_path / "link" / "ct" / "..") / "ct"  # any spelling: one root
    assert root == source_root(tmp_path / "My Data" / "ct/")
    out = str(tmp_path / "out.zarr")
    assert stored_text(f"{root}/labels/a b.nii.gz: mask values [1]", root) == \
        "labels/a b.nii.gz: mask values [1]"  # a space in the source folder's path
    assert stored_text(f"no case in {root} (3 files skipped)", root) == \
        "no case in . (3 files skipped)"
    (tmp_path / "plain").mkdir()
    plain = source_root(tmp_path / "plain")
    assert stored_text(f"{plain}2/x.dcm differs from {tmp_path}/elsewhere/y.dcm", plain) == \
        "x.dcm differs from y.dcm"  # a sibling folder is not below the source: names
    assert stored_text(f"{out}: case 'a' does not fit", root, out) == \
        "the store: case 'a' does not fit"
    assert stored_text("out.zarr: case 'a' in out.zarr", root, "out.zarr") == \
        "the store: case 'a' in out.zarr"  # a relative store name only where errors name it
    kept = "see https://example.org/a/b, 1/2 of the voxels, mm / s"
    assert stored_text(kept, root) == kept
