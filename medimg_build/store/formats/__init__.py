"""Storage formats: one ``StoreFormat`` per format, and ``pick_format``, the one place
that chooses which format a location is (``base.py``).

A format says whether it can open a location (``guess_can_open``), opens its root
group (``open``: the ``zarr.Group`` API, which the HDF5 adapter mirrors), opens its
reader and creates its writer, makes room for a replaced store (``make_room``),
describes an array (``array_info``), says what its writers do differently
(``writing_case``, ``finish``, ``writes_from_workers``) and lists, verifies and
snapshots the objects of its content manifest. Everything outside this package asks
the format object (``store_format.resumable``, ``store_format.verify(...)``) instead
of branching on which format it is.

Built in: ``zarr_format.ZarrFormat`` (the default: a directory, a ``.zip``, a URL) and
``hdf5_format.Hdf5Format`` (one file, by its signature or ``.h5``/``.hdf5`` name).
Adding a third format -- say a Zarr store inside an Icechunk repository -- is one new
module here with a ``StoreFormat`` subclass and its ``register_format(...)`` call,
imported below; no caller changes.
"""

from .base import StoreFormat, format_names, pick_format, register_format
from .zarr_format import ZARR, ZarrFormat
from .hdf5_format import HDF5, Hdf5Format

__all__ = ["HDF5", "ZARR", "Hdf5Format", "StoreFormat", "ZarrFormat", "format_names",
           "pick_format", "register_format"]
