"""DICOM SEG masks, on the real TotalSegmentator CT (20 slices, J2K) and its segmentation.

The SEG is made here with highdicom from the CT series and the NIfTI label map. The CT
files have empty SOP Class/Instance, Study and Series UIDs (anonymized that way), which
highdicom needs to reference its source images, so the test gives the in-memory copies
UIDs: SOP class and instance from each file's meta header, study and series fixed ones.
highdicom numbers segments 1..n, so labels LABELS of the NIfTI become segments 1..n.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel.orientations import apply_orientation, io_orientation, ornt_transform

from medimg_build import open_store, read_image
from medimg_build.errors import GeometryError
from medimg_build.geometry import ras_grid
from medimg_build.harmonize.orient import to_ras
from medimg_build.image import MedicalImage
from medimg_build.io.dicom_seg import (
    DicomSegError,
    place_on_grid,
    read_dicom_seg,
    segmentation_classes,
)
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

hd = pytest.importorskip("highdicom")

LABELS = (5, 20, 52, 79, 117)  # liver-sized down to small structures present in the CT
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
SERIES_UID = "1.2.826.0.1.3680043.8.498.2"


@pytest.fixture(scope="module")
def real(shared_data):
    base = shared_data / "totalsegmentator"
    ct = read_image(base / "example_ct_dicom")
    labels = read_image(base / "example_seg_dicom.nii.gz")
    return base, ct, on_grid_of(labels, ct)


def on_grid_of(mask: MedicalImage, image: MedicalImage) -> np.ndarray:
    """The mask's array in the image's axis order (the grids must hold the same voxels)."""
    assert ras_grid(mask.spatial_shape, mask.affine)[0] == ras_grid(image.spatial_shape,
                                                                     image.affine)[0]
    np.testing.assert_allclose(ras_grid(mask.spatial_shape, mask.affine)[1],
                               ras_grid(image.spatial_shape, image.affine)[1], atol=1e-3)
    transform = ornt_transform(io_orientation(mask.affine), io_orientation(image.affine))
    return apply_orientation(mask.array, transform)


def source_datasets(folder: Path) -> list[pydicom.Dataset]:
    """The CT files, sorted along the slice normal (the DICOM reader's k order), with UIDs."""
    datasets = []
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, SERIES_UID
        datasets.append(ds)
    iop = np.array(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    return sorted(datasets, key=lambda ds: np.array(ds.ImagePositionPatient, float) @ normal)


def segment(number: int, value: int) -> hd.seg.SegmentDescription:
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=f"structure {value}",
        segmented_property_category=hd.sr.CodedConcept("123037004", "SCT", "Anatomical Structure"),
        segmented_property_type=hd.sr.CodedConcept("91772007", "SCT", "Organ"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="TotalSegmentator", version="1", family=hd.sr.CodedConcept(
                "123109", "DCM", "Artificial Intelligence")),
    )


def write_seg(base: Path, labels: np.ndarray, out: Path, omit_empty_frames: bool = False,
              values=LABELS) -> Path:
    """A BINARY SEG of ``values`` (as segments 1..n) over the CT series, saved to ``out``.

    ``labels`` is in the CT's (i, j, k) order: a frame is ``labels[:, :, k].T`` (rows, columns)."""
    sources = source_datasets(base / "example_ct_dicom")
    segments = np.zeros(labels.shape, dtype=np.uint8)
    for number, value in enumerate(values, start=1):
        segments[labels == value] = number
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=segments.transpose(2, 1, 0),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment(n, v) for n, v in enumerate(values, start=1)],
        series_instance_uid=hd.UID(), series_number=100, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="medimg-build tests", manufacturer_model_name="test",
        software_versions="0", device_serial_number="0", omit_empty_frames=omit_empty_frames,
    )
    seg.save_as(out)
    return out


def expected_labels(labels: np.ndarray, values=LABELS) -> np.ndarray:
    result = np.zeros(labels.shape, dtype=np.uint8)
    for number, value in enumerate(values, start=1):
        result[labels == value] = number
    return result


@pytest.fixture(scope="module")
def seg_file(real, tmp_path_factory):
    base, _, labels = real
    return write_seg(base, labels, tmp_path_factory.mktemp("seg") / "ct.dcm")


def test_seg_reads_as_the_nifti_label_map_on_the_ct_grid(real, seg_file):
    _, ct, labels = real
    mask = read_image(seg_file)
    assert mask.meta["format"] == "dicom-seg"
    assert mask.array.dtype == np.uint8 and mask.array.flags.f_contiguous
    # Same axis order as the CT read by the DICOM reader: voxel for voxel, no reorientation.
    assert mask.spatial_shape == ct.spatial_shape == (512, 512, 20)
    np.testing.assert_allclose(mask.affine, ct.affine, atol=1e-3)
    np.testing.assert_array_equal(mask.array, expected_labels(labels))
    # And the same label map as the NIfTI once both are in RAS+.
    nifti = read_image(real[0] / "example_seg_dicom.nii.gz")
    ras_mask, ras_nifti = to_ras(mask), to_ras(nifti)
    np.testing.assert_allclose(ras_mask.affine, ras_nifti.affine, atol=1e-3)
    np.testing.assert_array_equal(ras_mask.array, expected_labels(ras_nifti.array))


def test_seg_names_its_segments(seg_file):
    mask = read_dicom_seg(seg_file)
    assert set(mask.meta["segments"]) == {"1", "2", "3", "4", "5"}
    first = mask.meta["segments"]["1"]
    assert first["label"] == "structure 5"
    assert first["category"] == "SCT:123037004" and first["category_meaning"] == "Anatomical Structure"
    assert first["type"] == "SCT:91772007" and first["algorithm_type"] == "AUTOMATIC"
    assert segmentation_classes(mask)["3"] == "structure 52"
    assert mask.meta["dicom"]["ReferencedSeriesInstanceUID"] == [SERIES_UID]
    assert mask.meta["dicom"]["SegmentationType"] == "BINARY"
    assert mask.history[0].name == "read"


def test_folder_holding_one_seg_reads_as_it(seg_file, tmp_path):
    (tmp_path / "seg").mkdir()
    (tmp_path / "seg" / "SEG0001").symlink_to(seg_file)
    np.testing.assert_array_equal(read_image(tmp_path / "seg").array, read_image(seg_file).array)


@pytest.mark.parametrize("values", [(33,), (97, 115)], ids=["slab", "gap"])
def test_seg_without_empty_frames_spans_its_slices_and_goes_back_on_the_ct_grid(
        real, tmp_path, values):
    """highdicom's default drops empty frames: the SEG grid is then the CT's slices from
    the first to the last labelled one (33: slices 3-19; 97 and 115: 0-5 and 11-19, the
    empty slices between them come back as 0)."""
    base, ct, labels = real
    present = np.flatnonzero(np.isin(labels, values).any(axis=(0, 1)))
    path = write_seg(base, labels, tmp_path / "slab.dcm", omit_empty_frames=True, values=values)
    assert pydicom.dcmread(path).NumberOfFrames == sum(
        (labels == v).any(axis=(0, 1)).sum() for v in values)
    mask = read_image(path)
    assert mask.spatial_shape == (512, 512, present[-1] - present[0] + 1)
    placed = place_on_grid(mask, ct)
    assert placed.spatial_shape == ct.spatial_shape and placed.array.flags.f_contiguous
    np.testing.assert_array_equal(placed.affine, ct.affine)
    np.testing.assert_array_equal(placed.array, expected_labels(labels, values))
    # Onto the same CT in RAS+ axis order (flipped i and j): same voxels, reordered.
    np.testing.assert_array_equal(to_ras(placed).array, place_on_grid(mask, to_ras(ct)).array)
    affine = ct.affine.copy()
    affine[0, 3] += 0.4  # 0.4 of a 0.98 mm voxel: between two lattice points
    shifted = ct.replace(affine=affine)
    with pytest.raises(GeometryError, match="not on the image grid"):
        place_on_grid(mask, shifted)


def test_overlapping_segments_are_refused(real, tmp_path):
    base, _, labels = real
    sources = source_datasets(base / "example_ct_dicom")
    liver = (labels == 5).transpose(2, 1, 0)
    stacked = np.stack([liver, liver], axis=-1).astype(np.uint8)  # two identical segments
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=stacked,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment(1, 5), segment(2, 5)], series_instance_uid=hd.UID(),
        series_number=100, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="medimg-build tests", manufacturer_model_name="test",
        software_versions="0", device_serial_number="0",
    )
    seg.save_as(tmp_path / "overlap.dcm")
    with pytest.raises(DicomSegError, match="overlap"):
        read_image(tmp_path / "overlap.dcm")


def test_a_ct_slice_is_not_a_seg(real):
    path = min((real[0] / "example_ct_dicom").iterdir())
    with pytest.raises(DicomSegError, match="not a DICOM Segmentation"):
        read_dicom_seg(path)


def test_volume_folder_recipe_builds_the_ct_with_its_seg_as_mask(real, seg_file, tmp_path):
    """The SEG as a case's mask gives the same stored mask as the NIfTI of the same labels."""
    base, _, _ = real
    nifti = nib.load(base / "example_seg_dicom.nii.gz")
    kept = expected_labels(np.asanyarray(nifti.dataobj))  # LABELS as 1..n, in NIfTI order
    classes = {"0": "background", **{str(n): f"structure {v}" for n, v in
                                      enumerate(LABELS, start=1)}}
    stores = {}
    for kind, suffix in [("seg", ".dcm"), ("nifti", ".nii.gz")]:
        source = tmp_path / kind
        (source / "images").mkdir(parents=True)
        (source / "labels").mkdir()
        (source / "images" / "ct").symlink_to(base / "example_ct_dicom")
        if kind == "seg":
            (source / "labels" / f"ct{suffix}").symlink_to(seg_file)
        else:
            nib.save(nib.Nifti1Image(kept, nifti.affine, nifti.header),
                     source / "labels" / f"ct{suffix}")
        recipe = load_recipe("volume-folder").with_overrides({
            "source": {"masks": f"labels/{{case_id}}{suffix}"},
            "labels": {"segmentation": {"classes": classes}}})
        out = tmp_path / f"{kind}.zarr"
        report = build_store(recipe, source, out, progress=False)
        assert report.ok, report.failed
        stores[kind] = open_store(out)
    seg_mask, nifti_mask = (stores[k].read_mask("ct") for k in ("seg", "nifti"))
    np.testing.assert_array_equal(seg_mask.affine, nifti_mask.affine)
    np.testing.assert_array_equal(seg_mask.array, nifti_mask.array)
    assert set(np.unique(seg_mask.array)) == {0, 1, 2, 3, 4, 5}
    np.testing.assert_array_equal(stores["seg"].read_image("ct").array,
                                  stores["nifti"].read_image("ct").array)
