"""medimg-build: public medical-image datasets into harmonized Zarr stores."""

from .errors import MedimgError
from .image import MedicalImage
from .io import read_image
from .store import open_store

__version__ = "0.1.0"

__all__ = ["MedicalImage", "MedimgError", "open_store", "read_image", "__version__"]
