"""What becomes of each case, typed: a CaseWritten (its journal record, no pixels) or a
CaseFailed (its error, the path kept apart from the text), the same whether this
process, a Dask worker or a resume produced it; and the writer contract's close, which
writes the root attributes it is given."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from medimg_build.case import Case
from medimg_build.errors import ImageReadError
from medimg_build.image import MedicalImage
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store import create_store
from medimg_build.store.writer import reopen_store

from fixtures import volume_folder


def _case(case_id: str, site: str) -> Case:
    pixels = np.arange(24 * 20 * 6, dtype=np.int16).reshape(24, 20, 6)
    image = MedicalImage(pixels, np.diag([0.7, 0.8, 2.5, 1.0]), meta={"modality": "CT"})
    return Case(case_id, image, mask=image.replace(array=(pixels % 3 == 0).astype(np.uint8)),
                row={"site": site, "age": 40.5})


def test_a_failed_case_crosses_processes_with_its_path_apart():
    """Errors pickle as what they were given: a Dask worker's CaseFailed arrives with
    the error's type, its path as a path, and its message."""
    from medimg_build.store.results import CaseFailed

    error = ImageReadError(Path("/data/src/images/b.nii.gz"), "not a valid gzip stream",
                           hint="the file may be truncated")
    arrived = pickle.loads(pickle.dumps(CaseFailed(3, "b", error)))
    assert isinstance(arrived.error, ImageReadError)
    assert arrived.error.given_path == Path("/data/src/images/b.nii.gz")
    assert arrived.message == str(error) and (arrived.index, arrived.case_id) == (3, "b")
    # A hostile cell quoted at length travels as the message shows it: cut, once.
    quoting = ImageReadError("x.csv", "bad cell " + "A" * 1_000_000)
    shipped = pickle.dumps(quoting)
    assert len(shipped) < 5_000 and str(pickle.loads(shipped)) == str(quoting)


# A tab (shown escaped in the message) after a space: no text replacement of the source
# folder finds it in the message, and the folders above it leaked into the store. A name
# full of regex and replacement syntax, and in the message twice (its path, and the
# folder "sub" the problem names), must come out the same.
@pytest.mark.parametrize("folder, workers", [("Smith John\tscans", 1),
                                             ("Smith John\tscans", 2),
                                             (r"a+b (1) [x] $y \1 \g<0>", 1)])
def test_a_failed_case_is_stored_with_its_path_relative_to_the_source(tmp_path, folder,
                                                                      workers):
    source = tmp_path / folder
    volume_folder.write_volume(source / "images" / "a.nii.gz")
    (source / "images" / "b.nii.gz").write_bytes(b"not a nifti")
    (source / "images" / "sub").mkdir()  # a folder: read as a DICOM series, none there
    recipe = load_recipe("volume-folder").with_overrides({"harmonize": {"spacing": None}})
    report = build_store(recipe, source, tmp_path / "o.zarr", progress=False, key="k",
                         workers=workers)
    assert report.built == ["a"]
    assert report.failed["b"].startswith(f"{source}/images/b.nii.gz: ".replace("\t", r"\t"))
    stored = report.to_dict(source, b"k")["failed"]
    assert stored["b"].startswith("images/b.nii.gz: not a valid gzip stream")
    assert stored["sub"].startswith("images/sub: contains no DICOM image files")
    table = pd.DataFrame(report.rows).set_index("case_id")
    assert table.loc["b", "error"] == stored["b"]
    assert not any("Smith" in text or "$y" in text for text in stored.values())


def test_close_writes_the_attributes_it_is_given(tmp_path):
    """No dict shared with the caller: what it changes after creating the store never
    reaches it; the final attributes are what close is given."""
    attrs = {"dataset": "toy", "labels": {}}
    writer = create_store(tmp_path / "given.zarr", "volumes", n_cases=1, attrs=attrs)
    untouched = create_store(tmp_path / "kept.zarr", "volumes", n_cases=1, attrs=attrs)
    attrs["dataset"] = "changed after creation"
    for each in (writer, untouched):
        each.write_case(0, _case("ct0", "A"))
    writer.close(pd.DataFrame({"case_id": ["ct0"]}),
                 {"dataset": "final", "build_report": {"built": 1}})
    untouched.close(pd.DataFrame({"case_id": ["ct0"]}))
    given = zarr.open_group(tmp_path / "given.zarr", mode="r").attrs["medimg"]
    kept = zarr.open_group(tmp_path / "kept.zarr", mode="r").attrs["medimg"]
    assert given["dataset"] == "final" and given["build_report"] == {"built": 1}
    assert kept["dataset"] == "toy" and "build_report" not in kept
    # The writer's own entries, and nothing else of the caller's.
    assert set(given) == {"dataset", "build_report", "schema_version", "layout", "n_cases",
                          "finished", "table", "arrays", "annotations", "image", "manifest"}


@pytest.mark.parametrize("layout", ["volumes", "stack"])
def test_a_resumed_store_recovers_the_cases_the_first_run_wrote(tmp_path, layout):
    """The writer says what it wrote (CaseWritten); a resume reads the journal into
    the same records, equal to them."""
    from medimg_build.store.contract import StoreWriter
    from medimg_build.store.results import CaseWritten

    ids = ["ct0", "ct1", "ct2"]
    journal = {"recipe_sha256": "r1", "case_ids": ids}
    attrs = {"recipe": {"sha256": "r1"}, "labels": {}}
    options = {"cases_per_shard": 1} if layout == "stack" else {}
    writer = create_store(tmp_path / "s.zarr", layout, n_cases=3, attrs=attrs,
                          journal=journal, **options)
    first = [writer.write_case(i, _case(ids[i], site)) for i, site in enumerate("AB")]
    writer.abort()  # the build ends here: ct2 never written
    assert all(isinstance(written, CaseWritten) for written in first)
    assert first[1].row == {"site": "B", "age": 40.5} and first[1].case_id == "ct1"
    resumed = reopen_store(tmp_path / "s.zarr", layout, 3, attrs, journal, **options)
    assert isinstance(resumed, StoreWriter)
    assert resumed.recovered == {0: first[0], 1: first[1]}
    resumed.write_case(2, _case("ct2", "C"))
    resumed.close(pd.DataFrame({"case_id": ids}))
    finished = reopen_store(tmp_path / "s.zarr", layout, 3, attrs, journal, **options)
    assert isinstance(finished, StoreWriter)  # FinishedStore: a writer, not a stand-in
    assert [w.case_id for w in finished.recovered.values()] == ids
    finished.close(pd.DataFrame({"case_id": ids}), {})


def test_a_stack_store_refuses_a_case_without_its_pixels(tmp_path):
    """A stack writes whole shards from the cases' pixels, here or in the worker that
    writes the shard (whose destination needs the arrays made first): a CaseWritten
    given to it without such a shard is refused, leaving its index free."""
    from medimg_build.errors import StoreError
    from medimg_build.store.results import case_written

    writer = create_store(tmp_path / "s.zarr", "stack", n_cases=1)
    assert writer.worker_destination().needs_template
    with pytest.raises(StoreError, match="needs the case's pixels"):
        writer.write_case(0, case_written(0, _case("ct0", "A")))
    assert writer.write_case(0, _case("ct0", "A")).case_id == "ct0"
    writer.close(pd.DataFrame({"case_id": ["ct0"]}))


def test_a_failed_case_crosses_dask_without_the_library_error_behind_it():
    """Distributed installs tblib, which pickles every exception with its cause, context
    and traceback. A case failed by a library's error (a CaseError raised ``from`` it)
    must still cross as the error's parts: a cause that does not pickle ended the whole
    build, and a cause quoting megabytes shipped them whole."""
    import threading

    from distributed.protocol.pickle import dumps, loads

    from medimg_build.errors import CaseError
    from medimg_build.store.results import CaseFailed

    class HoldsALock(Exception):  # as a library's error holding its file handle may
        def __init__(self, message):
            super().__init__(message)
            self.lock = threading.Lock()

    for cause in (HoldsALock("cannot decode"), RuntimeError("y" * 1_000_000)):
        try:
            try:
                raise cause
            except Exception as error:
                raise CaseError("/data/src/a.nii.gz", f"unexpected: {error}") from error
        except CaseError as error:
            failed = CaseFailed(4, "a", error)
        shipped = dumps(failed)
        arrived = loads(shipped)
        assert len(shipped) < 5_000
        assert arrived.message == failed.message and arrived.error.given_path == \
            "/data/src/a.nii.gz" and (arrived.index, arrived.case_id) == (4, "a")
