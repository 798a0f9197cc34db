"""Training loops that run through a frozen encoder (rather than on cached features).

`augmented`: RAD-DINO's paper-faithful linear probe, trained online on augmented views.
"""

from cxrbench.training.augment import AugmentationParams, AugmentationPolicy
from cxrbench.training.augmented import AugmentedProbe, AugmentedProbeConfig, encode_global, train_augmented_probe

__all__ = [
    "AugmentationParams",
    "AugmentationPolicy",
    "AugmentedProbe",
    "AugmentedProbeConfig",
    "encode_global",
    "train_augmented_probe",
]
