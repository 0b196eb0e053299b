"""Issue 14, red-team review: hostile files the first round of limits did not cover.

Each test makes its hostile file (a few MB at most), reads it in a fresh process under
an address-space limit (tests/peak_memory.py) where it could cost memory, and checks the
one-line refusal. Each failed on the code before its fix (commit messages name them).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from test_size_bombs import assert_refused_early, read_in_child


# -- NIfTI header extensions ------------------------------------------------------------


def nifti_with_extensions(extensions: int, extension_bytes: int) -> bytes:
    """A 4x4x4 int16 NIfTI-1 whose header extensions (comment code 6) hold
    ``extensions`` x ``extension_bytes`` bytes of 'A' before the voxels. nibabel reads
    every extension whole into memory before the voxels, and keeps it."""
    header = nib.Nifti1Header()
    header.set_data_shape((4, 4, 4))
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352 + extensions * extension_bytes
    head = header.binaryblock + b"\x01\0\0\0"
    one = struct.pack("<ii", extension_bytes, 6) + b"A" * (extension_bytes - 8)
    return head + one * extensions + bytes(4 * 4 * 4 * 2)


def test_nifti_gz_extensions_inflating_to_gigabytes_are_refused_before_nibabel_reads_them(
        tmp_path):
    """Two 1 GiB comment extensions of a .nii.gz are 2 MB of gzip: nibabel would hold
    both in memory (2 GiB) before reaching the 4x4x4 voxels."""
    path = tmp_path / "extensions.nii.gz"
    gib = 2**30
    header = nib.Nifti1Header()
    header.set_data_shape((4, 4, 4))
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352 + 2 * gib
    # 'A' * 1 GiB, deflated block by block (a few seconds; 2 MB of gzip).
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(b"A" * 2**24)
    parts = [deflate.compress(header.binaryblock + b"\x01\0\0\0")]
    for _ in range(2):
        parts.append(deflate.compress(struct.pack("<ii", gib, 6) + b"A" * (2**24 - 8)))
        parts.extend(deflate.compress(block) for _ in range(gib // 2**24 - 1))
    parts += [deflate.compress(bytes(128)), deflate.flush()]
    path.write_bytes(b"".join(parts))
    run = read_in_child(path)
    assert_refused_early(run, path, "extensions", error="ImageReadError")


def test_nifti_with_a_small_extension_still_reads(tmp_path):
    path = tmp_path / "comment.nii"
    path.write_bytes(nifti_with_extensions(1, 4096))
    run = read_in_child(path)
    assert run.stdout.startswith("READ (4, 4, 4)"), run.stdout + run.stderr[-2000:]
