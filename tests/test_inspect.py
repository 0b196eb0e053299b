"""``medimg-build inspect`` (issue 19): a volumes store's per-case arrays are described
in words, not as ``*x*x*x*``, and counts agree with their noun ("1 case")."""

from __future__ import annotations

import re

import nibabel as nib
import numpy as np

from medimg_build.cli import main


def _one_case_store(root) -> str:
    (root / "images").mkdir(parents=True)
    image = np.arange(12 * 10 * 6, dtype=np.int16).reshape(12, 10, 6)
    nib.save(nib.Nifti1Image(image, np.diag([2.0, 2.0, 3.0, 1.0])),
             root / "images" / "only.nii.gz")
    store = str(root.parent / "one.zarr")
    assert main(["build", "volume-folder", "--source", str(root), "--out", store,
                 "--quiet"]) == 0
    return store


def test_inspect_a_volumes_store_of_one_case(tmp_path, capsys):
    store = _one_case_store(tmp_path / "src")
    capsys.readouterr()
    assert main(["inspect", store]) == 0
    out = capsys.readouterr().out
    assert "*" not in out
    assert re.search(r"\b1 cases\b", out) is None
    assert "1 case complete" in out
    image = next(line for line in out.splitlines() if "cases/{case_id}/scale0/image" in line)
    assert "shape per case" in image and "chunks (1, 1, all, all)" in image


def test_counted():
    from medimg_build.describe import counted
    assert [counted(n, "case") for n in (0, 1, 2)] == ["0 cases", "1 case", "2 cases"]
    assert counted(1, "class", "classes") == "1 class"
    assert counted(3, "class", "classes") == "3 classes"
