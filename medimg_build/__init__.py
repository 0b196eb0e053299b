"""medimg-build: public medical-image datasets into harmonized Zarr stores."""

from .errors import MedimgError
from .image import MedicalImage

__version__ = "0.1.0"

__all__ = ["MedicalImage", "MedimgError", "open_store", "read_image", "__version__"]


def __getattr__(name: str):
    # Lazy, so that `import medimg_build` stays cheap for the CLI and worker processes.
    if name == "read_image":
        from .io import read_image

        return read_image
    if name == "open_store":
        from .store import open_store

        return open_store
    raise AttributeError(f"module 'medimg_build' has no attribute {name!r}")
