"""The bundled cbis-ddsm recipe builds CBIS-DDSM's layout (descriptive TCIA folders, CSVs
naming UID paths the download lacks) recreated from a real CR DICOM
(tests/fixtures/cbis_ddsm.py): one case per abnormality, ROI mask, pathology. The CSV
headers, CSV paths and folder names were verified against the public copies cited in
the fixture's docstring."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from medimg_build import open_store
from medimg_build.cli import _overrides
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store
from fixtures.cbis_ddsm import make_cbis_ddsm


def test_abnormalities_build_with_roi_mask_pathology_and_official_split(tmp_path, shared_data):
    # The NBIA download keeps the Mass-/Calc- folders in manifest-<id>/CBIS-DDSM/: two
    # levels below the CSVs, where the parser did not look (no case was found).
    made = make_cbis_ddsm(tmp_path / "src", shared_data)
    out = tmp_path / "cbis.zarr"
    report = build_store(load_recipe("cbis-ddsm"), made["root"], out, progress=False)
    assert report.ok and len(report.built) == len(made["cases"]), report.summary()
    assert validate_store(out) == []
    store = open_store(out)
    cases = store.cases.set_index("case_id")
    # case ids held the DICOM PatientID (the folder name): pseudonymized
    assert all(c.startswith("case-") for c in cases.index)
    pathology = store.labels("pathology")
    classes = store.attrs["labels"]["classification"]["pathology"]["classes"]
    got = sorted((r["laterality"], r["view"], int(r["abnormality_id"]),
                  classes[int(pathology.loc[c])], r["split"]) for c, r in cases.iterrows())
    assert got == sorted((s, v, a, p, split) for _, s, v, a, p, split in made["cases"])
    assert sum(r.startswith("row without its mammogram") for r in report.skipped.values()) \
        == made["rows_without_images"]
    assert (cases["modality"] == "MG").all() and (cases["organ"] == "breast").all()
    # The mask is the ROI file on the mammogram's grid (never the smaller crop), 255 -> 1.
    for case_id in cases.index:
        mask = store.read_mask(case_id).array
        assert set(np.unique(mask)) == {0, 1}
    assert store.read_image(cases.index[0]).array.shape[:2] == (640, 1024)


def test_macos_forks_beside_the_dicom_files_lose_no_abnormality(tmp_path, shared_data):
    """Red-team (issue 16 item 11), on the NBIA layout of tests/fixtures/cbis_ddsm.py
    (manifest-<id>/CBIS-DDSM/Mass-Training_P_00001_LEFT_CC/07-20-2016-DDSM-NA-74994/
    1.000000-full mammogram images-24515/1-1.dcm): a download copied through a Mac onto
    an exFAT disk has ``._1-1.dcm`` beside each file. The mammogram folder then held "2
    DICOM files, not 1" and its abnormalities were skipped; the forks are reported and
    every abnormality builds."""
    made = make_cbis_ddsm(tmp_path / "src", shared_data)
    dicoms = sorted(made["root"].rglob("*.dcm"))
    for dicom in dicoms:
        (dicom.parent / f"._{dicom.name}").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X")
    report = build_store(load_recipe("cbis-ddsm"), made["root"], tmp_path / "c.zarr",
                         progress=False)
    assert report.ok and len(report.built) == len(made["cases"]), report.summary()
    forks = [p for p, why in report.skipped.items() if ".DS_Store, ._*" in why]
    assert len(forks) == len(dicoms)


CALC_HEADER = ["patient_id", "breast density", "left or right breast", "image view",
               "abnormality id", "abnormality type", "calc type", "calc distribution",
               "assessment", "pathology", "subtlety", "image file path",
               "cropped image file path", "ROI mask file path"]


def _as_calcifications(root: Path) -> None:
    """The fixture's download as the calcification half of CBIS-DDSM: Calc- folders and
    calc_case_description_*.csv in the calc header (fixture docstring, find_string ids
    61464077764, 61512583478: "breast density" with a space, "calc type",
    "calc distribution" instead of the mass descriptors)."""
    for split in ("train", "test"):
        mass = root / f"mass_case_description_{split}_set.csv"
        with open(mass, newline="") as handle:
            rows = list(csv.DictReader(handle))
        mass.unlink()
        with open(root / f"calc_case_description_{split}_set.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, CALC_HEADER)
            writer.writeheader()
            for row in rows:
                paths = {k: row[k].replace("Mass-", "Calc-") for k in CALC_HEADER if "path" in k}
                writer.writerow({**{k: row.get(k, "") for k in CALC_HEADER}, **paths,
                                 "breast density": row["breast_density"],
                                 "abnormality type": "calcification",
                                 "calc type": "PLEOMORPHIC", "calc distribution": "CLUSTERED"})
    for folder in sorted(next(root.rglob("CBIS-DDSM")).iterdir()):
        folder.rename(folder.with_name(folder.name.replace("Mass-", "Calc-")))


def test_calcification_tables_build_with_the_overrides_the_recipe_names(tmp_path, shared_data):
    """Red-team: the recipe's comment said to add the calc CSVs to options.tables; on
    the real calc header that fails every case ("missing column 'mass shape'"). The
    --set lines the recipe now gives build them, with their own descriptors."""
    made = make_cbis_ddsm(tmp_path / "src", shared_data)
    _as_calcifications(made["root"])
    tables = ("source.options.tables=[calc_case_description_train_set.csv,"
              "calc_case_description_test_set.csv]")
    comment = Path(load_recipe("cbis-ddsm").path).read_text()
    lines = [tables, "source.columns.mass shape=null", "source.columns.mass margins=null",
             "source.columns.calc type=calc_type",
             "source.columns.calc distribution=calc_distribution"]
    assert all(f"--set '{line}'" in comment for line in lines)
    only_tables = load_recipe("cbis-ddsm").with_overrides(_overrides([tables], None))
    report = build_store(only_tables, made["root"], tmp_path / "a.zarr", progress=False)
    assert not report.built and all("'mass shape'" in why for why in report.failed.values())
    recipe = load_recipe("cbis-ddsm").with_overrides(_overrides(lines, None))
    report = build_store(recipe, made["root"], tmp_path / "c.zarr", progress=False)
    assert report.ok and len(report.built) == len(made["cases"]), report.summary()
    cases = open_store(tmp_path / "c.zarr").cases
    assert set(cases["calc_type"]) == {"PLEOMORPHIC"} and "mass_shape" not in cases
    assert set(cases["abnormality_type"]) == {"calcification"}
