"""CBIS-DDSM (Lee et al., 2017): DDSM film mammograms as DICOM, with ROI masks.

The TCIA download (NBIA Data Retriever, "descriptive" folder names, in a
``manifest-<id>/`` folder) and its CSVs::

    manifest-<id>/CBIS-DDSM/Mass-Training_P_00001_LEFT_CC/<date>-DDSM-NA-<n>/1.000000-full mammogram images-<n>/1-1.dcm
    manifest-<id>/CBIS-DDSM/Mass-Training_P_00001_LEFT_CC_1/<date>-DDSM-NA-<n>/1.000000-ROI mask images-<n>/1-1.dcm
                                                           (and the cropped ROI, 1-2.dcm;
                                                            sometimes in its own folder)
    mass_case_description_train_set.csv   patient_id, breast_density, left or right
        breast, image view, abnormality id, abnormality type, mass shape, mass margins,
        assessment, pathology, subtlety, image file path, cropped image file path,
        ROI mask file path
    calc_case_description_*.csv           the same with "breast density", calc type,
                                          calc distribution

The CSV's file paths name UID folders and ``000000.dcm`` files that the download does not
have; only their first part (``Mass-Training_P_00001_LEFT_CC`` / ``..._CC_1``) matches a
downloaded folder. So the parser ``cbis`` finds each row's full mammogram in the folder
named by the first part of ``image file path``, and its ROI mask among the DICOM files of
the folder named by ``ROI mask file path``: the one on the mammogram's pixel grid (same
rows and columns; the cropped ROI is smaller), whatever its file name says.

**One case per CSV row** (an abnormality: its mammogram, its ROI mask, its pathology),
named by the ROI folder (``Mass-Training_P_00001_LEFT_CC_1``, pseudonymized when it
holds the DICOM PatientID, as it does): a mammogram with several abnormalities is one
case per abnormality, since a case has one mask file. The official split is the
Training/Test of the folder names (field ``split``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pydicom

from ...errors import RecipeError
from ..paths import inside
from ..source_report import system_file
from ..label_tables import read_label_table
from ..sources import CaseSource, SourceListing, private_case_id
from . import parser

FOLDER = re.compile(r"^(Mass|Calc)-(Training|Test)_(P_\d+)_(LEFT|RIGHT)_(CC|MLO)(_\d+)?$")
NEEDED = ["patient_id", "left or right breast", "image view", "abnormality id", "pathology",
          "image file path", "cropped image file path", "ROI mask file path"]


def _folders(root: Path) -> dict[str, Path]:
    """CBIS folder name -> path, at any depth below the source (the NBIA download puts
    them in manifest-<id>/CBIS-DDSM/); the walk stops at each one found, so the DICOM
    files below them are not listed here."""
    found: dict[str, Path] = {}
    for folder, subfolders, _ in os.walk(root):
        for name in sorted(subfolders):
            if FOLDER.match(name):
                found.setdefault(name, Path(folder) / name)
        subfolders[:] = sorted(n for n in subfolders if not FOLDER.match(n))
    return found


def _dicom_files(folder: Path, root: Path, skipped: dict[str, str]) -> list[Path]:
    """The DICOM files below a CBIS folder, without the ``._1-1.dcm`` forks macOS leaves
    beside them (reported in ``skipped``): a fork is no second mammogram."""
    files = []
    for path in sorted(folder.rglob("*.dcm")):
        if (problem := system_file(path)) is not None:
            skipped[path.relative_to(root).as_posix()] = problem
        else:
            files.append(path)
    return files


def _grid(path: Path) -> tuple[int, int] | None:
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return int(ds.Rows), int(ds.Columns)
    except Exception:
        return None


@parser("cbis", options={"tables"})
def cbis(options: dict[str, Any], root: Path, key: bytes) -> SourceListing:
    tables = options.get("tables", ["mass_case_description_train_set.csv",
                                    "mass_case_description_test_set.csv"])
    folders = _folders(root)
    cases, skipped, used = [], {}, set()
    for name in tables:
        path = inside(root, name, "source.options.tables")
        table = read_label_table(path, "source.options.tables")
        table.columns = [c.strip() for c in table.columns]
        missing = [c for c in NEEDED if c not in table.columns]
        if missing:
            raise RecipeError(path, f"missing column(s) {missing}; it has "
                              f"{list(table.columns)}", hint="is this a CBIS-DDSM case CSV?")
        for row in table.to_dict(orient="records"):
            image_dir = row["image file path"].strip().split("/")[0]
            roi_dir = row["ROI mask file path"].strip().split("/")[0]
            where = f"{name}: {roi_dir}"
            if image_dir not in folders or roi_dir not in folders:
                lacking = "mammogram" if image_dir not in folders else "ROI"
                skipped[where] = f"row without its {lacking} folder"
                continue
            images = _dicom_files(folders[image_dir], root, skipped)
            if len(images) != 1:
                skipped[where] = f"{len(images)} DICOM files in the mammogram folder, not 1"
                continue
            grid = _grid(images[0])
            masks = [p for p in _dicom_files(folders[roi_dir], root, skipped)
                     if _grid(p) == grid]
            if len(masks) != 1:
                skipped[where] = (f"{len(masks)} DICOM files of the ROI folder on the "
                                  f"mammogram's grid, not 1")
                continue
            used.update({image_dir, roi_dir})
            match = FOLDER.match(roi_dir)
            density = row.get("breast_density", row.get("breast density", ""))
            fields = {**row, "breast_density": density, "split": match.group(2),
                      "lesion": match.group(1).lower()}
            cases.append(CaseSource(private_case_id(roi_dir, images[0], key), images[0],
                                    masks[0], patient_id=row["patient_id"].strip(),
                                    fields=fields))
    for name in sorted(set(folders) - used):
        skipped[name] = "folder no CSV row names"
    return SourceListing(cases, skipped)
