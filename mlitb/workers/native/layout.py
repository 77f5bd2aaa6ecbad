"""The one place where our flat float32 parameter order (TF.js layout) meets PyTorch's.

Our wire order is the TF.js weight manifest: layer by layer, kernel then bias, each row-major in its
TF.js shape: a conv kernel is [kh, kw, in, out], a dense kernel is [in, out], and a dense layer after
a flatten of an [h, w, c] feature map numbers its inputs in (h, w, c) order (NHWC). PyTorch holds a
conv weight as [out, in, kh, kw], a linear weight as [out, in], and flattens NCHW maps in (c, h, w)
order. Everything else (the engine, the worker, the tests) goes through `ParamLayout`: one gather
index array, computed once per network, turns our flat vector into PyTorch's flat vector (its
parameters in module order, each row-major) and back. Images arrive NHWC uint8 and are laid out
NCHW by `to_nchw`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlitb.model.spec import Network


@dataclass(frozen=True)
class TorchShape:
    """One PyTorch parameter: its name in our manifest and its PyTorch shape."""

    name: str
    shape: tuple[int, ...]


class ParamLayout:
    """`to_torch(ours)[k] == ours[perm[k]]`; `to_ours` is its inverse (used for gradients)."""

    def __init__(self, network: Network):
        parts: list[np.ndarray] = []
        shapes: list[TorchShape] = []
        offset = 0
        flat_from: tuple[int, int, int] | None = None  # (h, w, c) of the map the next dense layer's inputs came from
        prev = network.input_shape
        for layer in network.layers:
            if layer.type == "flatten":
                flat_from = tuple(prev) if len(prev) == 3 else None
            for w in layer.weights:
                idx = np.arange(offset, offset + w.size, dtype=np.int64).reshape(w.shape)
                if w.is_bias:
                    torch_shape = w.shape
                elif layer.type == "conv2d":  # [kh, kw, in, out] -> [out, in, kh, kw]
                    idx = idx.transpose(3, 2, 0, 1)
                    torch_shape = idx.shape
                else:  # dense [in, out] -> [out, in]; inputs from an NHWC flatten are renumbered as NCHW
                    if flat_from is not None:
                        h, wd, c = flat_from
                        idx = idx.reshape(h, wd, c, -1).transpose(3, 2, 0, 1).reshape(-1, h * wd * c)
                    else:
                        idx = idx.T
                    torch_shape = idx.shape
                parts.append(idx.ravel())
                shapes.append(TorchShape(w.name, tuple(torch_shape)))
                offset += w.size
            if layer.type == "dense":
                flat_from = None
            prev = layer.output_shape
        self.param_count = offset
        self.shapes = tuple(shapes)
        self.perm = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        self.inverse = np.empty_like(self.perm)
        self.inverse[self.perm] = np.arange(len(self.perm))

    def to_torch(self, ours: np.ndarray) -> np.ndarray:
        """Our flat vector -> PyTorch's flat vector (a new float32 array)."""
        self._check(ours)
        return np.ascontiguousarray(ours[self.perm], dtype=np.float32)

    def to_ours(self, theirs: np.ndarray) -> np.ndarray:
        """PyTorch's flat vector -> our flat vector (a new float32 array)."""
        self._check(theirs)
        return np.ascontiguousarray(theirs[self.inverse], dtype=np.float32)

    def _check(self, flat: np.ndarray) -> None:
        if flat.shape != (self.param_count,):
            raise ValueError(f"a vector of {flat.size} values; the network has {self.param_count} parameters")


def to_nchw(batch_nhwc):
    """A torch [n, h, w, c] batch as [n, c, h, w] (a view in channels-last memory; no copy)."""
    return batch_nhwc.permute(0, 3, 1, 2)
