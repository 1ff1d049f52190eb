"""QMIA's regressor for images: a small CNN that predicts a number per (image, label).

Gradient boosting on raw pixels ignores that neighbouring pixels belong together; a small
convolutional network is what Bertran et al. use for images (their regressor is a ResNet; this
one is sized for population sets of hundreds to thousands of images on a CPU). The label picks
one output of a head with one output per class, so the network shares its features across
classes and predicts per class.

Records may come with several views (the augmented queries: the image, its mirror, shifts);
each epoch then shows every record once, in one of its views drawn at random, so a fit costs
the same as on the images alone and the network learns the views as the target was trained on
them. Deterministic for a seed: its own torch generator, one thread while it fits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from miaudit.errors import InputError


@dataclass(frozen=True)
class ImageRegressorSettings:
    """The CNN and its training, fixed before any comparison (bench_augmented_queries)."""

    channels: tuple[int, int] = (8, 16)
    hidden: int = 64
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4


@contextmanager
def _one_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


#: Images with a side longer than this are average-pooled to it before the first convolution.
MAX_SIDE = 64


def _network(shape: tuple[int, int, int], n_out: int, s: ImageRegressorSettings) -> Any:
    from torch import nn

    c, h, w = shape
    c1, c2 = s.channels
    # Larger images are average-pooled to MAX_SIDE first: the regressor learns a record's
    # difficulty, not its detail, and its memory stays bounded (1024 × 1024 images took 7 GB).
    pooled = (min(h, MAX_SIDE), min(w, MAX_SIDE))
    shrink = [nn.AdaptiveAvgPool2d(pooled)] if pooled != (h, w) else []
    h, w = pooled
    return nn.Sequential(
        nn.Unflatten(1, (c, *shape[1:])),
        *shrink,
        nn.Conv2d(c, c1, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * (h // 4) * (w // 4), s.hidden),
        nn.ReLU(),
        nn.Linear(s.hidden, n_out),
    )


#: The head has one output per class: more classes than this are refused (a crafted label would
#: otherwise size the network).
MAX_CLASSES = 10_000


class ImageRegressor:
    """fit/predict on flat images (records, C·H·W) or their views (records, views, C·H·W).

    ``n_classes``: the head's width (default: the fit's largest label + 1). A label the fit
    never saw (a class absent from a cross-fitting fold, or from the population) is predicted
    as the mean of the trained classes' outputs, not by an untrained output.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        settings: ImageRegressorSettings = ImageRegressorSettings(),
        seed: int = 0,
        n_classes: int | None = None,
    ) -> None:
        c, h, w = image_shape
        if h < 4 or w < 4:
            raise InputError("image_shape", f"QMIA's CNN needs images of at least 4×4, got {h}×{w}")
        self.shape = (int(c), int(h), int(w))
        self.settings = settings
        self.seed = seed
        self.n_classes = n_classes
        self._net: Any = None
        self._seen = np.zeros(0, dtype=bool)
        self._x_centre = self._x_scale = self._y_centre = self._y_scale = 0.0

    def fit(self, x: np.ndarray, labels: np.ndarray, y: np.ndarray) -> ImageRegressor:
        import torch

        views = np.asarray(x, dtype=np.float32)
        views = views[:, None, :] if views.ndim == 2 else views
        target = np.asarray(y, dtype=np.float64).reshape(views.shape[:2])
        n, q = views.shape[:2]
        labels = np.asarray(labels, dtype=np.int64)
        n_out = max(int(labels.max()) + 1, self.n_classes or 0)
        if labels.min() < 0 or n_out > MAX_CLASSES:
            raise InputError("labels", f"must lie in [0, {MAX_CLASSES}) for QMIA's CNN head")
        self._seen = np.bincount(labels, minlength=n_out) > 0
        with np.errstate(over="ignore", invalid="ignore"):
            self._x_centre, self._x_scale = float(views.mean()), float(views.std()) + 1e-8
            self._y_centre, self._y_scale = float(target.mean()), float(target.std()) + 1e-8
        if not np.isfinite([self._x_centre, self._x_scale]).all():
            raise InputError(
                "population.features",
                "images too large to standardise in float32 (their spread overflows): rescale them",
            )
        if not np.isfinite([self._y_centre, self._y_scale]).all():
            raise InputError("population.phi", "values too large to standardise (overflow)")
        # Standardised a batch at a time below, not as a whole copy of every view.
        yt = torch.from_numpy(((target - self._y_centre) / self._y_scale).astype(np.float32))
        lt = torch.from_numpy(labels.copy())
        s = self.settings
        gen = torch.Generator().manual_seed(self.seed)
        # fork_rng restores the CPU generator; torch.manual_seed would also reseed CUDA's.
        with _one_thread(), torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(self.seed)
            net = _network(self.shape, n_out, s)
            opt = torch.optim.Adam(
                net.parameters(), lr=s.learning_rate, weight_decay=s.weight_decay
            )
            for _ in range(s.epochs):
                order = torch.randperm(n, generator=gen)
                view = torch.randint(q, (n,), generator=gen)
                for start in range(0, n, s.batch_size):
                    b = order[start : start + s.batch_size]
                    raw = views[b.numpy(), view[b].numpy()]
                    xb = torch.from_numpy((raw - self._x_centre) / self._x_scale)
                    out = net(xb).gather(1, lt[b, None])[:, 0]
                    loss = ((out - yt[b, view[b]]) ** 2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
        self._net = net.eval()
        return self

    def predict(self, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Predictions with ``x``'s leading shape: (records,) or (records, views)."""
        import torch

        if self._net is None:
            raise RuntimeError("fit the regressor before predicting")
        views = np.asarray(x, dtype=np.float32)
        lead = views.shape[:-1]
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size and labels.min() < 0:
            raise InputError("labels", "must be non-negative class indices")
        lab = np.broadcast_to(labels.reshape(labels.shape + (1,) * (len(lead) - 1)), lead)
        lab = lab.reshape(-1)
        seen = np.zeros(lab.size, dtype=bool)
        inside = lab < self._seen.size
        seen[inside] = self._seen[lab[inside]]
        flat = views.reshape(-1, views.shape[-1])  # standardised a batch at a time: no copy
        trained = torch.from_numpy(self._seen)
        out = np.empty(flat.shape[0], dtype=np.float64)
        with _one_thread(), torch.no_grad():
            for start in range(0, flat.shape[0], 4096):
                sl = slice(start, start + 4096)
                batch = torch.from_numpy((flat[sl] - self._x_centre) / self._x_scale)
                heads = self._net(batch).double()
                fallback = heads[:, trained].mean(dim=1).numpy()
                idx = torch.from_numpy(np.where(seen[sl], lab[sl], 0))
                own = heads.gather(1, idx[:, None])[:, 0].numpy()
                out[sl] = np.where(seen[sl], own, fallback)
        return (out * self._y_scale + self._y_centre).reshape(lead)
