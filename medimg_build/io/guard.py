"""Every failure of a read as one line naming the file: the last guard of each reader."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path

from ..errors import ImageReadError, MedimgError
from ..image import MedicalImage
from ..limits import OPTION, SETTING, current_max_voxels


def read_guarded(path: Path, read: Callable[[], MedicalImage]) -> MedicalImage:
    """``read()``, with every failure as a one-line MedimgError naming ``path``."""
    if path.is_file() and path.stat().st_size == 0:
        # Every reader would fail on it in its own words; this says what it is.
        raise ImageReadError(path, "empty file (0 bytes)",
                             hint="the download or copy was interrupted; fetch the file again")
    try:
        return read()
    except MedimgError:
        raise
    except MemoryError as error:
        # The header passed check_size, yet this worker cannot hold the image. Drop the
        # failed reader's frames (and the partial arrays they hold) before going on.
        traceback.clear_frames(error.__traceback__)
        raise ImageReadError(
            path, f"out of memory while reading it (the size limit is "
            f"{current_max_voxels():,} values)",
            hint=f"lower {OPTION} / {SETTING} so that such files are refused from their "
            "header, or give each worker more memory (fewer workers)",
        ) from error
    except Exception as error:  # noqa: BLE001
        # Last resort: a library failure the reader did not anticipate still becomes a
        # one-line error naming the file (the original stays chained for debugging).
        raise ImageReadError(
            path, f"unexpected failure while reading ({type(error).__name__}: {error})",
            hint="the file may be damaged; please report it if it opens elsewhere",
        ) from error
