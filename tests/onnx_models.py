"""ONNX files exported from small torch modules, for the tests that load or serve them."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any


def export_onnx(net: Any, path: Path, output: str = "logits", n_features: int = 4) -> Path:
    """``net`` exported to ``path`` (TorchScript exporter, batch axis dynamic), its input named
    ``x`` and its output ``output``."""
    import torch

    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, and offline
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(2, n_features),),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=[output],
            dynamic_axes={"x": {0: "n"}, output: {0: "n"}},
        )
    return path
