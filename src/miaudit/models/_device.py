"""Where torch models train: ``"cpu"``, ``"cuda"`` (torch's current GPU) or ``"cuda:N"``.

On the CPU nothing is changed: the bits are those of training before devices existed. On a
GPU, training runs under the deterministic settings torch offers (``docs/scale.md``, "GPU"):
deterministic algorithms (an operation without one raises rather than varying), cuBLAS's fixed
workspace (``CUBLAS_WORKSPACE_CONFIG=:4096:8``, set only if the user has not set it), cuDNN's
deterministic kernels without autotuning, and TF32 off so that float32 stays float32. They
are set for the block that trains and restored afterwards (the environment variable stays: cuBLAS
reads it once per process).

Random draws (initial weights, data order, dropout masks, augmentations) come from each
model's CPU generators on every device, so a GPU run draws what a CPU run draws and differs
from it only by floating-point rounding; DP-SGD's noise is drawn on the device by a generator
seeded from the model's stream.

Importing this module does not import torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from miaudit.errors import InputError

if TYPE_CHECKING:
    import torch

DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")
CUBLAS_WORKSPACE = ":4096:8"


def check_device(device: str, field: str = "engine.device") -> str:
    """``device`` if it names a device this machine has; else an InputError naming ``field``.

    Only a CUDA device imports torch (to ask whether CUDA is available).
    """
    if not isinstance(device, str) or DEVICE_PATTERN.fullmatch(device) is None:
        raise InputError(field, f'{device!r} is not a device: use "cpu", "cuda" or "cuda:N"')
    if device == "cpu":
        return device
    import torch

    if not torch.cuda.is_available():
        raise InputError(
            field,
            f'{device!r} asked for, but torch sees no CUDA GPU here (torch {torch.__version__}); use "cpu"',
        )
    count = torch.cuda.device_count()
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= count:
        raise InputError(field, f"{device!r} asked for, but torch sees {count} CUDA GPU(s)")
    return device


def is_cuda(device: str) -> bool:
    return device.startswith("cuda")


@contextmanager
def training_device(device: str) -> Iterator[torch.device]:
    """The torch device to train on, under deterministic settings when it is a GPU (restored
    afterwards). The CPU is yielded with nothing changed."""
    check_device(device)
    import torch

    if not is_cuda(device):
        yield torch.device("cpu")
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.allow_tf32,
        torch.backends.cuda.matmul.allow_tf32,
    )
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield torch.device(device)
    finally:
        torch.use_deterministic_algorithms(before[0])
        (
            torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark,
            torch.backends.cudnn.allow_tf32,
            torch.backends.cuda.matmul.allow_tf32,
        ) = before[1:]
