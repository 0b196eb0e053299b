"""Harmonized Zarr v3 stores: writing them (``create_store``) and reading them
(``open_store``).

Layout (schema 2.0)
===================

Axis order. In memory a ``MedicalImage`` is ``array[x, y[, z][, c]]`` (nibabel index
order) and its affine maps ``(x, y, z)`` indices to RAS+ mm. Stored arrays reverse the
spatial axes and put the channel first: ``(c, [z,] y, x)`` (``(c, y, x)`` for 2D), the
order of OME-NGFF and of C-contiguous slices. The channel dimension is named
``channel``; an image without a channel axis is stored with ``channel`` of size 1 (the
``channel_axis`` attribute tells a reader whether to drop it again).

Geometry in stored order: ``spacing`` lists the voxel size in mm of ``([z,] y, x)``;
``origin`` lists the RAS+ position of voxel 0 as ``(S, A, R)`` -- the world axes the
stored ``(z, y, x)`` run along in the harmonized RAS+ orientation. ``affine`` is always
the full 4x4 in nibabel index order ``(x, y[, z])``, i.e. its columns are the REVERSE of
the stored dims: it is the truth for oblique grids, where spacing/origin are not enough.

Compression: Blosc zstd level 3 with byte shuffle (lossless) unless the caller passes
another Zarr v3 codec, followed by ``crc32c``: every chunk of image and mask (and of the
stack's affine/spacing/origin/complete) ends with the checksum of its compressed bytes,
and every image and mask chunk is written, an empty one too, so that readers refuse a
damaged or missing chunk (``integrity.py``). Chunks: one 2D slice of one channel of one
case, so a slice decodes without its neighbours. Sharding keeps the file count low
(below).

Root attributes: ``attrs["medimg"]`` is the dict the builder passes (dataset, modality,
organ, recipe, harmonization, label vocabulary, versions, provenance) plus:
``schema_version`` ("3.0"; 2.x stores are read too), ``layout``, ``n_cases``, ``finished`` (false until the
writer is closed: a reader refuses an interrupted build), ``table`` = {"columns",
"json_columns"}, ``image`` = {"spatial_ndim", "channel_dim"[, "channel_axis",
"n_channels" (stack only; a volumes case has its own)]} and ``arrays`` = {name: {dims,
dtype, shape, chunks, shards, codecs}}.
Metadata is consolidated into the root ``zarr.json`` at close (one request to open).

Case table (both layouts): one 1-D array per column at the root, dimension ``case``.
The DataFrame column ``case_id`` is the array ``case`` (str), so xarray indexes by case
id. str/int/float/bool columns keep their type (a missing str is ""; a missing int makes
the column float64 with NaN); any other column (lists, dicts, mixed) is stored as JSON
strings, listed in ``table.json_columns`` and decoded by the reader. Strings use Zarr's
variable-length string dtype. A column may not take the name of another root array
(stack: image, mask, affine, spacing, origin, complete, spatial, world; both: case,
cases, label_<name>, <name>_class, cases.parquet): the writer refuses it at the first
case whose ``Case.row`` has it, and at close. A Zarr store also holds the table, with
its classification labels, as the file ``cases.parquet`` at the root (no Zarr node;
written at close from the arrays, covered by the manifest: ``table_arrow.py``).

Classification labels (both layouts, at the root, -1 = missing/unknown): a scalar label
``name`` is ``label_<name>`` (case,) int16; a multi-label one is ``label_<name>`` (case,
<name>_class) int8 with the coordinate array ``<name>_class`` of class names (from the
vocabulary, ``attrs["medimg"]["labels"]["classification"][name]["classes"]`` or
``...["labels"][name]["classes"]``, else "0".."n-1"). Each
label array's attributes hold its vocabulary entry.

Boxes and landmarks (both layouts, written at close): the groups ``boxes`` (dimension
``box``) and ``landmarks`` (dimension ``landmark``), each a table of 1-D column arrays,
one row per box/point, sorted by case index: ``case_index`` (position along ``case``),
``case_id``, ``label``, ``label_index`` (into the group attribute ``classes``: the
vocabulary's ``labels.boxes.classes`` / ``labels.landmarks.classes``, else the sorted
labels), harmonized voxel coordinates in stored axis names (boxes ``[z_min, z_max,]
y_min, y_max, x_min, x_max``, points ``[z,] y, x``; voxel centres at integers, box
min/max are voxel EDGES, so voxels 10..19 are 9.5 .. 19.5), RAS+ mm (boxes ``R_min,
R_max, A_min, A_max, S_min, S_max`` = extent, points ``R, A, S``; a picture's: boxes
``row_min, row_max, column_min, column_max``, points ``row, column``, on the film in mm
or, where its pixel size is unknown, source pixels), for 3D boxes
``key_slice`` (harmonized z of a box drawn on one slice, else -1), and the original
coordinates on the source image in its own index order (``source_i_min`` ... /
``source_i, source_j[, source_k]``; boxes also ``source_key_slice``). A group exists
only when some case has that kind; ``attrs["medimg"]["annotations"]`` = {kind: {rows,
classes, columns}}. Readers (``store.boxes()``, ``store.landmarks()``) keep the rows
of complete cases. ``boxes``/``landmarks`` are reserved root names.

stack (every case has the same shape, dtype and channels; opens with
``xarray.open_zarr(path)``)::

    zarr.json                 root group, attrs["medimg"], consolidated metadata
    image     (case, channel, [z,] y, x)  chunks (1, 1, [1,] Y, X), shards (k, C, [Z,] Y, X)
    mask      (case, [z,] y, x)           chunks (1, [1,] Y, X), shards (k, [Z,] Y, X)
    affine    (case, affine_row, affine_col) float64, nibabel index order
    spacing   (case, spatial) float64     coordinate `spatial` = ("z", "y", "x") or ("y", "x")
    origin    (case, world) float64       coordinate `world` = ("S", "A", "R")
    complete  (case,) bool                set True after the case's shard is written
    label_<name> ..., <name>_class ...
    case      (case,) str                 case ids (table column case_id)
    <column>  (case,)                     the other table columns

``k`` = cases per shard (default: ~64 MiB of uncompressed image per shard, within
[1, N]); affine/spacing/origin/complete are chunked by k cases too, so each shard is
written by one call without touching another shard's chunks.

volumes (each case its own grid and channel count, and a mask or not; all share the
image dtype and number of spatial axes; opens with
``xarray.open_datatree(path, engine="zarr")``)::

    zarr.json                 root group, attrs["medimg"], consolidated metadata
    case, <column>, label_<name>, <name>_class    as in the stack
    cases/<case_id>/          group, an OME-NGFF 0.5 image: attrs "medimg_case", "ome"
      scale0/                 level 0, the harmonized grid
        image  (channel, [z,] y, x)   chunks (1, [1,] Y, X), one shard = the whole array
        z, y, x                       1-D voxel-centre positions in mm (origin + i*spacing)
      scale<n>/               pyramid level n (only with pyramid_levels > 1), as scale0
      labels/                 attrs "ome" = {"version": "0.5", "labels": ["mask"]}
        mask/                 the NGFF label image: attrs "ome" (multiscales, image-label)
          mask  ([z,] y, x)   the mask, chunked like the image; z, y, x beside it
          scale<n>/mask, z, y, x      instead, with a pyramid: level n of the mask

``medimg_case`` = {case_id, affine (4x4 list, nibabel index order), spacing, origin,
shape (stored spatial), axis_aligned (whether z/y/x are exact), channel_axis,
complete}. ``complete`` is written true last, after the case's arrays. ``ome`` =
{"version": "0.5", "multiscales": [{"name": case_id, "axes": [channel, [z,] y, x]
(space axes in millimeter), "type": "mean", "metadata", "datasets": [{"path":
"scale<n>/image", "coordinateTransformations": [scale [1, sz, sy, sx], translation
[0, tz, ty, tx]]} per level]}], "omero": {"channels": [{"label" (the channel's
name, else the modality), "color" (hex RGB), "active" (the first of grey channels, all
three of a colour picture), "window": {"min", "max" (the stored values' range),
"start", "end" (the display window, always increasing: soft tissue for a CT in HU,
else the 0.5/99.5 percentiles of the stored values, of all three channels for a
colour picture)}} per channel], "rdefs": {"model": "greyscale" or "color"}}}. The NGFF
axis of channels is named "channel" (not "c"), because OME-NGFF 0.5 requires axes
names to equal the array's ``dimension_names``. The mask's ``ome`` has the same
datasets (``mask``, or ``scale<n>/mask`` with a pyramid; spatial axes only: one label
map for every channel), "type": "mode", and "image-label" = {colors: one RGBA per
class value of the vocabulary (0 transparent), properties: [{label-value, name}] from
``labels.segmentation.classes``, source: {image: "../../"}}. Each image level is a
group of its own so that xarray opens every level as one Dataset, and a mask without
a pyramid sits in its label image group so that ome-zarr-models validates it
(``ngff.py``); levels are halved in-plane, along z only once its spacing is at most
twice the in-plane spacing, and level n's scale and translation put each voxel centre
at the centre of the level-0 block it averages (``pyramid.py``). Readers read level 0.

Completeness: a case is visible to readers only when complete (volumes: its group's
``medimg_case.complete``; stack: ``complete[case]``). ``MedimgStore.cases`` lists
complete cases only, and reading any other case raises StoreError.

Builds: lock, journal, resume (Zarr; details in ``journal.py``). ``build_store`` keeps
two things inside the store directory, outside the Zarr hierarchy:
``.medimg-build.lock`` (JSON host, pid, since, command; created with O_EXCL, removed
at close or on an error exit; a second build fails naming the holder; the lock of a
dead pid on this host is stale and taken over, as the report and ``provenance.lock``
say; on fsspec URLs best-effort only) and the journal ``.medimg-build/`` (the recipe
hash and ordered case ids, and per write unit -- a stack shard, a volumes case -- each
case's table row, labels, boxes, landmarks and image template as JSON, written before
the unit's completion marker). ``build --resume`` reopens a store of the same recipe
and case list (else a one-line refusal saying what differs), takes the cases that are
complete -- volumes: ``complete`` true; stack: shards whose every case is complete,
since a shard is only ever written whole -- from their journal records without
harmonizing them again, deletes what close writes and what unfinished cases left, and
builds the rest: the result equals an uninterrupted build except ``provenance`` (which
records the resume) and ``build_report.seconds``. Close removes the journal when every
case is complete (such a store resumes as "nothing to redo"); a store with failed cases
keeps it, so that ``--resume`` retries them. HDF5 files are not resumable.

Formats: the layout above is stored as Zarr v3 (a directory, a ``.zip`` snapshot, a
URL) or as one HDF5 file (``formats/hdf5_backend.py`` maps it). ``formats/`` has one
``StoreFormat`` per format and ``pick_format``, the one place that chooses (by the
``format`` asked for, else a new store's name, else an existing store's content);
``opening.py`` and ``writer.py`` ask it, and everything else reads and writes through
the root group a format gives (``zarr.Group``, or the ``Hdf5Group`` adapter with its API).
The layouts are classes (``layouts.py``) that take a format: one writer and one reads
class per layout, for every format.
"""

from .opening import open_store
from .reader import MedimgStore
from .writer import create_store

__all__ = ["MedimgStore", "create_store", "open_store"]
