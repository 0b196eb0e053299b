"""Training on a store: a PyTorch dataset that imports no torch until asked.

``CaseDataset`` (dataset.py) -- the cases of a store as items (dicts of NumPy arrays),
whole, as random slices or as random patches (sampling.py: padding, foreground
oversampling), through any ``transform``; ``pad_collate`` (collate.py) -- items of
different shapes as one batch; ``as_monai`` and ``TorchioTransform`` (adapters.py) --
items for MONAI's and TorchIO's transforms, with their geometry.
"""

from .adapters import TorchioTransform, as_monai
from .collate import pad_collate
from .dataset import BatchIndices, CaseDataset

__all__ = ["BatchIndices", "CaseDataset", "TorchioTransform", "as_monai", "pad_collate"]
