"""The bundled lidc-idri recipe builds LIDC's layout (CT series + LidcReadMessage XML)
recreated from the real TotalSegmentator CT (tests/fixtures/lidc.py): consensus nodule
boxes of >= 50 % of the readers, labelled by their median malignancy. The layout (NBIA's
LIDC-IDRI/ collection folder and metadata.csv, descriptive folder names, the XML's
elements and namespace) was verified against the public copies cited in
tests/fixtures/lidc.py."""

from __future__ import annotations

import pytest

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.recipe.sources import list_sources
from medimg_build.store.validate import validate_store
from fixtures.lidc import make_lidc


def test_ct_series_build_with_consensus_nodule_boxes(tmp_path, shared_data):
    made = make_lidc(tmp_path / "src", shared_data)
    out = tmp_path / "lidc.zarr"
    report = build_store(load_recipe("lidc-idri"), made["root"], out, progress=False)
    assert report.ok and len(report.built) == made["n_cases"]
    assert validate_store(out) == []
    store = open_store(out)
    cases = store.cases.set_index("case_id")
    assert len(cases) == made["n_cases"] and cases["patient_id"].nunique() == 2
    assert not cases["patient_id"].str.startswith("LIDC").any()  # pseudonymized
    reasons = list(report.skipped.values())
    assert reasons.count("IdriReadMessage XML, not a CT read") == made["skipped_xml"]

    boxes = store.boxes()
    assert len(boxes) == made["n_boxes"]
    by_depth = {shape[2]: case for case, shape in cases["original_shape"].items()}
    for patient, expected in made["boxes"].items():
        case = by_depth[made["n_slices"][patient]]
        rows = boxes[boxes["case_id"] == case]
        assert len(rows) == len(expected)
        (i0, j0, k0, i1, j1, k1), label, n_readers = expected[0]
        row = rows.iloc[0]
        assert row["label"] == label
        # voxel ranges on the series as read (edges at +-0.5 around the voxels)
        assert (row["source_i_min"], row["source_j_min"], row["source_k_min"]) == \
            (i0 - 0.5, j0 - 0.5, k0 - 0.5)
        assert (row["source_i_max"], row["source_j_max"], row["source_k_max"]) == \
            (i1 + 0.5, j1 + 0.5, k1 + 0.5)
        assert cases.loc[case, "n_nodules"] == "1" or cases.loc[case, "n_nodules"] == 1
    # series 1: nodule B (one reader of four) is not a consensus nodule
    one = by_depth[20]
    assert int(cases.loc[one, "n_reader_nodules"]) == 4 and int(cases.loc[one, "n_readers"]) == 4
    assert cases.loc[one, "malignancy_median"] == "4"
    assert store.read_image(one).spacing == pytest.approx((1.0, 1.0, 1.0))


def test_patients_are_the_lidc_folders_from_the_download_or_the_collection(tmp_path,
                                                                           shared_data):
    """From the NBIA download (manifest-<id>/LIDC-IDRI/ above the patients: the recipe found no XML
    before, and would have named every patient "LIDC-IDRI") or from LIDC-IDRI/ itself,
    each series' patient is its LIDC-IDRI-NNNN folder."""
    made = make_lidc(tmp_path / "src", shared_data)
    recipe = load_recipe("lidc-idri")
    for source in (made["root"], made["collection"]):
        listing = list_sources(recipe, source)
        assert sorted(c.patient_id for c in listing.cases) == made["patients"]


def test_a_macos_fork_of_the_read_is_a_system_file_not_a_broken_xml(tmp_path, shared_data):
    """Red-team (issue 16 item 11), on the NBIA layout of tests/fixtures/lidc.py
    (manifest-<id>/LIDC-IDRI/LIDC-IDRI-0001/<study>/<series>/069.xml beside the slices):
    a ``._069.xml`` fork, which the recipe's ``**/LIDC-IDRI-*/**/*.xml`` glob finds, is
    reported as a system file, not as "not well-formed XML"."""
    made = make_lidc(tmp_path / "src", shared_data)
    xml = next(made["root"].rglob("*.xml"))
    (xml.parent / f"._{xml.name}").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X")
    skipped = list_sources(load_recipe("lidc-idri"), made["root"]).skipped
    fork = (xml.parent / f"._{xml.name}").relative_to(made["root"]).as_posix()
    assert ".DS_Store, ._*" in skipped[fork]
