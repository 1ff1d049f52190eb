"""Safe model files: safetensors for torch weights, skops for scikit-learn. Never pickle.

Files are written atomically; integrity (sha256) is the engine cache's manifest's job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from miaudit._io import atomic_path
from miaudit.errors import InputError


def save_torch_state(
    path: Path, state: dict[str, Any], metadata: dict[str, str] | None = None
) -> None:
    """Write tensors (torch or numpy) to ``path`` in safetensors format (restricted 0600)."""
    import torch
    from safetensors.torch import save_file

    tensors = {
        k: (
            v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))
        ).contiguous()
        for k, v in state.items()
    }
    with atomic_path(path, restricted=True) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_torch_state(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def save_sklearn(path: Path, estimator: Any) -> None:
    import skops.io as sio

    with atomic_path(path, restricted=True) as tmp:
        sio.dump(estimator, tmp)


def load_sklearn(path: Path) -> Any:
    """Load a skops file whose every node is an allow-listed class (models/_skops_policy.py);
    anything else is refused with an InputError naming the file and the untrusted types."""
    from miaudit.models._skops_policy import load_checked

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError("model", f"cannot read {str(path)!r} ({exc.strerror})") from None
    return load_checked(data, path.name)
