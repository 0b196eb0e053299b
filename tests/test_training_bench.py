"""``make bench``'s training reads (benchmarks/training_reads.py) run as the report says:
the same stack store from a local folder and from a moto S3 server, every epoch whole,
with 0 and 2 DataLoader workers, reported as samples per second and their ratio."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("moto")

from benchmarks import training_reads  # noqa: E402


def test_the_training_reads_section_measures_both_stores(tmp_path, monkeypatch):
    volume = np.random.default_rng(0).integers(-1024, 3000, (training_reads.CASES, 24, 20))
    np.save(tmp_path / "ct.npy", volume.astype(np.int16))
    monkeypatch.setattr(training_reads, "WORK", tmp_path / "work")
    monkeypatch.setattr(training_reads, "ROUNDS", 1)
    results = training_reads.run(SimpleNamespace(npy=tmp_path / "ct.npy"))
    assert set(results["local"]) == set(results["s3"]) == {"0", "2"}
    for where in ("local", "s3"):
        assert all(np.isfinite(rate) and rate > 0 for rate in results[where].values())
    for workers, ratio in results["s3_over_local"].items():
        assert ratio == pytest.approx(results["s3"][workers] / results["local"][workers])
    lines = training_reads.markdown(results)
    assert lines[0] == "## Training reads: S3 against local disk"
    assert sum("| S3 (moto) |" in line for line in lines) == 2


def test_an_epoch_that_misses_samples_is_an_error(tmp_path, monkeypatch):
    """The count each epoch is checked against: a loader that drops a batch fails."""
    volume = np.zeros((20, 8, 8), np.int16)
    stack = tmp_path / "s.zarr"
    training_reads.write_slice_stack(volume, stack)
    monkeypatch.setattr(training_reads, "BATCH", 6)
    original = training_reads.CaseDataset.batches
    monkeypatch.setattr(training_reads.CaseDataset, "batches",
                        lambda self, n, shuffle=False: original(self, n, shuffle, drop_last=True))
    with pytest.raises(RuntimeError, match="gave 18 samples, not 20"):
        training_reads.samples_per_second(str(stack), None, 0)
