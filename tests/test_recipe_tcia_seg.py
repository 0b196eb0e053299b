"""The bundled tcia-seg recipe: a DICOM tree whose SEGs are paired with the series they
reference (tests/fixtures/tcia_seg.py, from the real TotalSegmentator CT and labels), in
the NBIA download's layout (manifest folder, metadata.csv, descriptive folder names)
verified against the public copies cited in the fixture."""

from __future__ import annotations

import numpy as np

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store
from fixtures.tcia_seg import make_tcia_seg


def test_series_build_with_the_seg_that_references_them(tmp_path, shared_data):
    made = make_tcia_seg(tmp_path / "src", shared_data)
    out = tmp_path / "tcia.zarr"
    report = build_store(load_recipe("tcia-seg"), made["root"], out, progress=False)
    assert report.ok and len(report.built) == made["n_cases"], report.summary()
    assert validate_store(out) == []
    store = open_store(out)
    cases = store.cases.set_index("case_id")
    with_mask = [c for c in cases.index if store.read_mask(c) is not None]
    assert len(with_mask) == made["n_masks"]
    assert cases.loc[with_mask[0], "n_source_files"] == 21  # 20 slices + the SEG
    # Segment names are the SEG's; the SEG's sparse frames land on the whole series grid.
    assert store.attrs["labels"]["segmentation"]["classes"] == made["classes"]
    mask = store.read_mask(with_mask[0]).array
    assert set(np.unique(mask)) == {0, 1, 2}
    ratio = (mask == 1).sum() / (mask == 2).sum()
    expected = made["voxels"]["liver"] / made["voxels"]["spleen"]
    assert abs(ratio / expected - 1) < 0.1  # resampled to 1.5 mm: proportions kept
    assert list(report.skipped.values()).count("DICOM SEG of no series of the tree") == \
        made["unpaired_segs"]
    # NBIA's metadata.csv is reported as not an image, not silently passed over.
    assert [where for where in report.skipped if where.endswith("metadata.csv")]
