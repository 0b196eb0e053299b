"""The bundled ChestX-ray14 recipe builds its miniature download: findings, boxes,
the official test list and patient-level splits."""

from __future__ import annotations

from collections import Counter

import numpy as np

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store

from fixtures import nih_chestxray14


def test_chestxray14_recipe_builds_its_fixture(shared_data, tmp_path):
    made = nih_chestxray14.make(tmp_path / "nih", shared_data)
    out = tmp_path / "nih.zarr"
    report = build_store(load_recipe("nih-chestxray14"), tmp_path / "nih", out, progress=False)
    assert report.ok and len(report.built) == made["cases"] and not report.skipped
    assert validate_store(out) == []

    store = open_store(out)
    findings = store.labels("finding")
    assert Counter({c: int(findings[c].sum()) for c in findings.columns if findings[c].sum()}) \
        == made["per_class"]
    cases = store.cases.set_index("case_id")
    for name in made["test"]:
        assert cases.loc[name.removesuffix(".png"), "split"] == "test"
    by_patient = cases.groupby(cases.index.map(lambda c: made["patients"][f"{c}.png"]))["split"]
    assert (by_patient.nunique() == 1).all()  # no patient in two splits

    # Each box covers its bright block in the 512x512 harmonized image.
    boxes = store.boxes().set_index("case_id")
    assert sorted(boxes.index) == sorted(n.removesuffix(".png") for n in made["boxes"])
    for name, (label, x, y, w, h) in made["boxes"].items():
        box = boxes.loc[name.removesuffix(".png")]
        assert box["label"] == label
        image = store.read_image(name.removesuffix(".png")).array
        inside = image[int(np.ceil(box.x_min)):int(box.x_max), int(np.ceil(box.y_min)):int(box.y_max)]
        assert inside.mean() > 0.9  # 250/255, the block's grey
