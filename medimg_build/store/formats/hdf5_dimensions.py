"""netCDF-4 dimensions in the HDF5 store, so that xarray's h5netcdf engine opens it:
``xarray.open_datatree(path, engine="h5netcdf")`` (volumes) and
``xarray.open_dataset(path, engine="h5netcdf")`` (stack).

Our own readers name an axis by the ``dimension_names`` attribute (``hdf5_backend``);
netCDF names it by the HDF5 dimension scale attached to it, and refuses a dataset that
has scales on some axes and not on others. So at close every labelled axis of every
dataset gets a scale. The conventions followed, as netCDF-C writes them and h5netcdf
1.8.3 reads them ("spec": netCDF-C's docs/file_format_specifications.md, section "The
NetCDF-4 Format", read in its 4.6.2 copy; h5netcdf lines as installed):

- "Datasets must have either dimension scales for every dimension, or no dimension
  scales at all. Partial dimension scales are not ... understood by the netCDF library"
  (spec, "Dimensions without HDF5 Dimension Scales"); h5netcdf raises "malformed
  variable ... has mixing of labeled and unlabeled dimensions" (h5netcdf/core.py
  ``_unlabeled_dimension_mix``, lines 911-931).
- A coordinate variable (1-D, named after its one dimension: ``case``, ``spatial``,
  ``world``, ``<name>_class``, an image or mask level's ``z``/``y``/``x``; and the
  ``manifest`` of stores written before it became 0-d, as Zarr's did in schema 3.0) is
  itself the dimension's scale, named after it ("In the case where a coordinate variable is
  defined for a dimension, the HDF5 dimscale ... contains the coordinate data", spec,
  "Dimensions with HDF5 Dimension Scales"; h5netcdf/core.py line 418 takes a scale
  dataset's own name as its dimension).
- A dimension without a coordinate variable (``channel``, ``affine_row``, a mask
  level's ``z``/``y``/``x`` in stores before schema 3.0, ``box``, ...) is a dataset of its
  length whose values are never written, made a scale whose NAME attribute starts with
  "This is a netCDF dimension but not a netCDF variable." (spec, same section); written
  as h5netcdf writes it:
  big-endian float32, and the length appended as ``%10d`` (h5netcdf/dimensions.py
  ``Dimension._create_scale``, lines 189-232). h5netcdf lists such a dataset as a
  dimension and not as a variable (h5netcdf/core.py lines 1171-1183, 903-908).
- netCDF dimensions are visible in every descendant group ("Dimension Scope in a Group
  Hierarchy", NetCDF Users Guide: docs.unidata.ucar.edu/nug/2.0-draft/
  netcdf_objects.html), and h5netcdf names an attached dimension after the scale
  dataset, wherever it lives (core.py lines 406-416). So an axis uses the nearest
  scale of its name in its group or an ancestor when the length agrees (the root's
  ``case`` for every table column), else a dimension-only scale in its own group: each
  case's and each level's ``z``/``y``/``x`` are their own, whatever the other cases'.
- No ``_Netcdf4Dimid`` is written: "If this attribute is present on any dimension
  scale, it must be present on all dimension scales in the file" (spec, "Dimension and
  Coordinate Variable Ordering"), and readers number dimensions without it (h5netcdf:
  ``Dimension._dimid``, dimensions.py line 166). No ``_Netcdf4Coordinates`` either: it
  is for coordinate variables of two or more dimensions, which a store has none of.

What is left out: a dataset named like a dimension that is not its coordinate, in the
group its dimension-only scale would go to (a stack table column named ``x``, say).
netCDF-C renames such a variable ``_nc4_non_coord_<name>``; a store cannot rename its
columns, so the datasets on that dimension keep no scales at all (netCDF's "no
dimension scales at all": h5netcdf names their axes ``phony_dim_<n>``).

The dimension-only datasets are bookkeeping, not store arrays: ``is_dimension_only``
is how every reader of the file (``hdf5_reader``, ``tree``, ``hdf5_manifest``) leaves
them out, as they leave out the scale attributes (``SCALE_ATTRS``). They are not in the
content manifest, so the content hash of a store is what it was before they existed.
Since nothing hashes them, only a dataset exactly as written here counts as one (no
values, no other attributes: it cannot hide data), ``Hdf5Group`` refuses to read one
as an array, and ``verify`` checks every attached scale against the hashed
``dimension_names`` and shape (``scale_problems``).
"""

from __future__ import annotations

import h5py

from ...errors import StoreError
from .hdf5_backend import dims_of

# netCDF-C's DIM_WITHOUT_VARIABLE (netcdf.h); h5netcdf/core.py line 47.
NOT_A_VARIABLE = "This is a netCDF dimension but not a netCDF variable."


# All a dimension-only scale carries: HDF5's scale bookkeeping, never medimg's attributes.
_SCALE_ONLY = frozenset({"CLASS", "NAME", "REFERENCE_LIST"})


def is_dimension_only(node) -> bool:
    """Whether ``node`` is a netCDF dimension that is not a variable, exactly as
    ``_dimension_only`` makes one: 1-D big-endian float32, its length in its NAME, no
    values ever written (no storage) and no other attributes. Anyone can write that NAME
    on a dataset; one holding values or shaped otherwise is not bookkeeping, and every
    reader of the file (and verify) sees it as the array it is."""
    if not isinstance(node, h5py.Dataset) or node.ndim != 1:
        return False
    return (_scale_name(node) == f"{NOT_A_VARIABLE}{node.shape[0]:10d}"
            and node.dtype.str == ">f4" and node.id.get_storage_size() == 0
            and set(node.attrs) <= _SCALE_ONLY)


def _scale_name(dataset: h5py.Dataset) -> str:
    name = dataset.attrs.get("NAME", "")
    return name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)


def scale_problems(root: h5py.Group) -> list[tuple[str, str]]:
    """(dataset path, problem) for each axis whose attached dimension scales are not
    exactly one scale named like the axis (its ``dimension_names`` entry) and of its
    length. h5netcdf names and sizes a dimension by its scale, so such a file opens in
    xarray with axes swapped or sizes that disagree with the arrays, while the content
    hash, which leaves the scale attachments out, is the store's. Also each dataset
    that h5netcdf would not show (its NAME says "dimension but not a variable",
    h5netcdf/core.py ``_netcdf_dimension_but_not_variable``) but that is not one."""
    found: list[tuple[str, str]] = []

    def visit(path: str, node) -> None:
        if (isinstance(node, h5py.Dataset) and NOT_A_VARIABLE in _scale_name(node)
                and not is_dimension_only(node)):
            found.append((path, "is named a netCDF dimension without values (HDF5 "
                                "attribute NAME), which xarray's h5netcdf engine hides"))
        if (not isinstance(node, h5py.Dataset) or node.is_scale
                or "DIMENSION_LIST" not in node.attrs):  # a scale, or "no scales at all"
            return
        try:
            dims = dims_of(node)
        except StoreError:  # not one name per axis: reported as its changed metadata
            return
        for axis, (dim, length) in enumerate(zip(dims, node.shape)):
            scales = node.dims[axis].values()
            if not scales:
                # Stores written before the netCDF dimensions have scales on some axes
                # only: h5netcdf refuses them ("mixing of labeled and unlabeled").
                continue
            if len(scales) > 1:
                found.append((path, f"axis {axis} ({dim}) has {len(scales)} dimension scales, "
                                    "not one"))
            elif _basename(scales[0]) != dim:
                found.append((path, f"axis {axis} ({dim}) has the dimension scale "
                                    f"{scales[0].name}"))
            elif scales[0].shape != (length,):
                found.append((path, f"axis {axis} ({dim}) has the dimension scale "
                                    f"{scales[0].name} of length {scales[0].size}, "
                                    f"not {length}"))

    root.visititems(visit)
    return found


def attach_netcdf_dimensions(root: h5py.Group) -> None:
    """Attach a dimension scale to every labelled axis of every dataset below ``root``
    (module docstring), creating the dimension-only scales that are missing. Called
    once, on the finished file: sorted visits (HDF5 lists names in order) make the same
    inputs give the same bytes."""
    datasets: list[h5py.Dataset] = []
    root.visititems(lambda _, node: datasets.append(node)
                    if isinstance(node, h5py.Dataset) else None)
    variables = []
    for dataset in datasets:  # first, so that every coordinate is found as a scale
        if not _is_coordinate(dataset):
            variables.append(dataset)
        elif not dataset.is_scale:
            dataset.make_scale(_basename(dataset))
    for dataset in variables:
        scales = [_scale(dataset, dim, length)
                  for dim, length in zip(dims_of(dataset), dataset.shape)]
        if any(scale is None for scale in scales):
            continue  # all axes or none, never some (module docstring)
        for axis, scale in enumerate(scales):
            dataset.dims[axis].attach_scale(scale)


def _scale(dataset: h5py.Dataset, dim: str, length: int) -> h5py.Dataset | None:
    """The scale of ``dim`` that ``dataset`` sees: the nearest one in its group or an
    ancestor if its length is ``length``, else a new dimension-only scale in the
    dataset's group (None when another node has that name there)."""
    group = dataset.parent
    while True:
        node = group.get(dim)
        if isinstance(node, h5py.Dataset) and node.ndim == 1 and node.is_scale:
            if node.shape[0] == length:
                return node
            break  # a nearer dimension of this name must hide that one
        if group.name == "/":
            break
        group = group.parent
    home = dataset.parent
    if dim in home:
        return None
    return _dimension_only(home, dim, length)


def _dimension_only(group: h5py.Group, dim: str, length: int) -> h5py.Dataset:
    """A netCDF dimension without a coordinate variable, as h5netcdf writes one."""
    scale = group.create_dataset(dim, shape=(length,), dtype=">f4", track_times=False)
    scale.make_scale(f"{NOT_A_VARIABLE}{length:10d}")
    return scale


def _is_coordinate(dataset: h5py.Dataset) -> bool:
    return dataset.ndim == 1 and dims_of(dataset) == (_basename(dataset),)


def _basename(dataset: h5py.Dataset) -> str:
    return dataset.name.rpartition("/")[2]
