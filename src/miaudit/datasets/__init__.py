"""Datasets the engine trains on: built-in (offline) and user files, with preprocessing fitted
only on each model's training records."""

from miaudit.datasets._builtin import adult, breast_cancer, digits, fashion_mnist, purchase_like
from miaudit.datasets._config import BuiltinName, DataConfig, PurchaseOptions, load_dataset, subset
from miaudit.datasets._dataset import Affine, Dataset, fit_affine

__all__ = [
    "Affine",
    "BuiltinName",
    "DataConfig",
    "Dataset",
    "PurchaseOptions",
    "adult",
    "breast_cancer",
    "digits",
    "fashion_mnist",
    "fit_affine",
    "load_dataset",
    "purchase_like",
    "subset",
]
