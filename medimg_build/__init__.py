"""medimg-build: public medical-image datasets into harmonized Zarr stores."""

from .errors import MedimgError
from .image import MedicalImage

__version__ = "0.1.0"

__all__ = ["MedicalImage", "MedimgError", "build_store", "load_recipe", "open_store",
           "read_image", "__version__"]

# Lazy, so that `import medimg_build` stays cheap for the CLI and worker processes.
_LAZY = {
    "read_image": ("medimg_build.io", "read_image"),
    "open_store": ("medimg_build.store", "open_store"),
    "build_store": ("medimg_build.recipe.build", "build_store"),
    "load_recipe": ("medimg_build.recipe.model", "load_recipe"),
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        module, attribute = _LAZY[name]
        return getattr(import_module(module), attribute)
    raise AttributeError(f"module 'medimg_build' has no attribute {name!r}")
