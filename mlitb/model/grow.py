"""Adding classes to a trained network (MLitB §3.6, "learn a new class on the fly").

The output dense layer (the dense layer whose units are the classes) gains one unit per new
class: its kernel (inputs x units, row-major in the flat vector) gains a column and its bias
an entry. Existing weights keep their values; the new ones start at zero, so the new class
starts with logit 0 and is learnt from its examples. The same padding grows the AdaGrad
history (zero: the new weights have seen no gradient yet).
"""

from __future__ import annotations

import copy

import numpy as np

from mlitb.errors import ErrorCode, MlitbError
from mlitb.model.spec import Network, parse_network

MAX_CLASSES = 256  # labels travel as one byte each
# layers that may follow the output dense layer without changing the class count
_SHAPE_KEEPING = ("softmax", "dropout", "relu", "tanh", "sigmoid")


def output_layer_index(spec_layers: list[dict]) -> int:
    """Index in the spec list (input first) of the dense layer that produces the classes."""
    for i in range(len(spec_layers) - 1, 0, -1):
        kind = spec_layers[i].get("type")
        if kind == "dense":
            return i
        if kind not in _SHAPE_KEEPING:
            break
    raise MlitbError(ErrorCode.CANNOT_ADD_CLASS, "the classes must come from a final dense layer (followed only by "
                     "activations or dropout) for a class to be added")


def with_more_classes(spec_layers: list[dict], extra: int) -> list[dict]:
    """The layer list with `extra` more units in its output dense layer."""
    layers = copy.deepcopy(spec_layers)
    layer = layers[output_layer_index(layers)]
    units = layer["units"] + extra
    if units > MAX_CLASSES:
        raise MlitbError(ErrorCode.CANNOT_ADD_CLASS, f"{units} classes; at most {MAX_CLASSES}")
    layer["units"] = units
    return layers


def grow_arrays(old: Network, new: Network, *flats: np.ndarray) -> list[np.ndarray]:
    """Each flat vector of `old`'s weights laid out for `new`: every weight keeps its values at the
    same indices and is zero-padded where `new` is larger (the added output units)."""
    if len(old.weights) != len(new.weights):
        raise ValueError("the networks differ in their weights, not only in their output units")
    out = []
    for flat in flats:
        if flat.size != old.param_count:
            raise ValueError(f"vector of {flat.size} values; the network has {old.param_count} parameters")
        parts, offset = [], 0
        for w_old, w_new in zip(old.weights, new.weights):
            part = flat[offset:offset + w_old.size].reshape(w_old.shape)
            offset += w_old.size
            pad = [(0, b - a) for a, b in zip(w_old.shape, w_new.shape)]
            if len(w_old.shape) != len(w_new.shape) or any(p < 0 for _, p in pad):
                raise ValueError(f"weight {w_new.name} shrinks or changes rank: {w_old.shape} -> {w_new.shape}")
            parts.append(np.pad(part, pad).ravel())
        out.append(np.concatenate(parts).astype(np.float32))
    return out


def fit_checkpoint(spec_layers: list[dict], network: Network, params: np.ndarray,
                   history: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A checkpoint saved before classes were added (the spec and examples are stored at once, the
    parameters at the next checkpoint), grown to `network`; a checkpoint that already fits is returned
    as is. Anything else is a ValueError."""
    if params.size == network.param_count:
        return params, history
    i = output_layer_index(spec_layers)
    fan_in = network.layers[i - 1].weights[0].shape[0]
    missing = network.param_count - params.size
    if missing <= 0 or missing % (fan_in + 1):
        raise ValueError(f"checkpoint has {params.size} parameters; the network has {network.param_count}")
    older = copy.deepcopy(spec_layers)
    older[i]["units"] -= missing // (fan_in + 1)
    if older[i]["units"] < 1:
        raise ValueError(f"checkpoint has {params.size} parameters; the network has {network.param_count}")
    params, history = grow_arrays(parse_network(older), network, params, history)
    return params, history
