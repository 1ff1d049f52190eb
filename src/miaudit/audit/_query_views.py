"""The augmented query views of flat images, in the order the built-in CNN recipe records them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from miaudit.errors import InputError
from miaudit.models import Augmentation


def augmented_queries(
    features: np.ndarray,
    augment: Sequence[Augmentation],
    image_shape: tuple[int, int, int] | None,
) -> list[np.ndarray]:
    """The query views of flat images ``features`` (records, C·H·W) in the order the built-in
    CNN recipe records them (:func:`miaudit.models.query_views`); ``[features]`` without
    ``augment``."""
    if not augment:
        return [np.asarray(features)]
    if image_shape is None or int(np.prod(image_shape)) != np.shape(features)[-1]:
        raise InputError(
            "image_shape",
            f"augmented queries need the images' (channels, height, width) matching {np.shape(features)[-1]} features, got {image_shape}",
        )
    import torch

    from miaudit.models import query_views

    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    return [v.numpy() for v in query_views(x, image_shape, list(augment))]
