"""Network spec: an allow-listed JSON list of layers, validated into shapes and a weight manifest.

Unknown layer types are errors, never skipped. The weight manifest is in TF.js order
(layer by layer, kernel then bias), which is also the order of the flat parameter vector.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mlitb.errors import ErrorCode, MlitbError

ACTIVATIONS = ("relu", "tanh", "sigmoid", "softmax", "linear")
LAYER_TYPES = ("input", "conv2d", "maxpool2d", "dense", "flatten", "dropout", "relu", "tanh", "sigmoid", "softmax")
MAX_LAYERS = 64
MAX_DIM = 4096
MAX_PARAMS = 50_000_000

# allowed keys per layer type, with their defaults (None = required)
_KEYS: dict[str, dict[str, Any]] = {
    "input": {"shape": None},
    "conv2d": {"filters": None, "kernel": None, "stride": 1, "padding": "same", "activation": "linear"},
    "maxpool2d": {"size": 2, "stride": None},
    "dense": {"units": None, "activation": "linear"},
    "flatten": {},
    "dropout": {"rate": 0.5},
    "relu": {}, "tanh": {}, "sigmoid": {}, "softmax": {},
}


@dataclass(frozen=True)
class Weight:
    name: str
    shape: tuple[int, ...]
    fan_in: int
    fan_out: int
    is_bias: bool

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Layer:
    type: str
    name: str
    params: dict[str, Any]
    output_shape: tuple[int, ...]
    weights: tuple[Weight, ...] = ()


@dataclass(frozen=True)
class Network:
    layers: tuple[Layer, ...]
    input_shape: tuple[int, ...]
    weights: tuple[Weight, ...] = field(default=())

    @property
    def param_count(self) -> int:
        return sum(w.size for w in self.weights)

    @property
    def num_classes(self) -> int:
        return self.layers[-1].output_shape[-1]

    def to_spec(self) -> list[dict]:
        return [{"type": "input", "shape": list(self.input_shape)}] + [
            {"type": l.type, **l.params} for l in self.layers
        ]


def _fail(index: int, layer: Any, msg: str) -> MlitbError:
    kind = layer.get("type") if isinstance(layer, dict) else None
    return MlitbError(ErrorCode.INVALID_NETWORK, f"layer {index} ({kind or '?'}): {msg}")


def _int(i: int, layer: dict, key: str, lo: int, hi: int) -> int:
    v = layer[key]
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _fail(i, layer, f"'{key}' must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _fill(i: int, layer: dict) -> dict:
    kind = layer["type"]
    allowed = _KEYS[kind]
    extra = sorted(set(layer) - set(allowed) - {"type"})
    if extra:
        raise _fail(i, layer, f"unknown key(s) {', '.join(extra)}; allowed: {', '.join(allowed) or 'none'}")
    out = {}
    for key, default in allowed.items():
        if key in layer:
            out[key] = layer[key]
        elif default is None and not (kind == "maxpool2d" and key == "stride"):
            raise _fail(i, layer, f"missing required key '{key}'")
        else:
            out[key] = default
    return out


def parse_network(spec: Any) -> Network:
    """Validate a JSON layer list and compute every layer's output shape and weights."""
    if not isinstance(spec, list) or not spec:
        raise MlitbError(ErrorCode.INVALID_NETWORK, "network must be a non-empty list of layers")
    if len(spec) > MAX_LAYERS:
        raise MlitbError(ErrorCode.INVALID_NETWORK, f"network has {len(spec)} layers; at most {MAX_LAYERS}")
    for i, layer in enumerate(spec):
        if not isinstance(layer, dict) or not isinstance(layer.get("type"), str):
            raise _fail(i, layer, "each layer must be an object with a string 'type'")
        if layer["type"] not in LAYER_TYPES:
            raise _fail(i, layer, f"unknown layer type '{layer['type']}'; allowed: {', '.join(LAYER_TYPES)}")
    if spec[0]["type"] != "input":
        raise _fail(0, spec[0], "the first layer must be 'input'")
    first = _fill(0, spec[0])
    shape = first["shape"]
    if (not isinstance(shape, list) or len(shape) not in (1, 3)
            or any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= MAX_DIM for d in shape)):
        raise _fail(0, spec[0], "'shape' must be [features] or [height, width, channels] of positive integers")
    input_shape = tuple(shape)
    cur = input_shape
    layers: list[Layer] = []
    weights: list[Weight] = []
    counters: dict[str, int] = {}
    for i, raw in enumerate(spec[1:], start=1):
        kind = raw["type"]
        if kind == "input":
            raise _fail(i, raw, "only the first layer may be 'input'")
        p = _fill(i, raw)
        counters[kind] = counters.get(kind, 0) + 1
        name = f"{kind}_{i}"
        lw: list[Weight] = []
        if kind == "conv2d":
            if len(cur) != 3:
                raise _fail(i, raw, f"needs a [h, w, c] input, got {list(cur)}")
            f = _int(i, {**p, "type": kind}, "filters", 1, MAX_DIM)
            k = _int(i, {**p, "type": kind}, "kernel", 1, 64)
            s = _int(i, {**p, "type": kind}, "stride", 1, 64)
            if p["padding"] not in ("same", "valid"):
                raise _fail(i, raw, f"'padding' must be 'same' or 'valid', got {p['padding']!r}")
            h, w, c = cur
            if p["padding"] == "same":
                oh, ow = -(-h // s), -(-w // s)
            else:
                oh, ow = (h - k) // s + 1, (w - k) // s + 1
            if oh < 1 or ow < 1:
                raise _fail(i, raw, f"kernel {k} does not fit the {h}x{w} input")
            lw = [Weight(f"{name}/kernel", (k, k, c, f), k * k * c, k * k * f, False),
                  Weight(f"{name}/bias", (f,), k * k * c, k * k * f, True)]
            cur = (oh, ow, f)
        elif kind == "maxpool2d":
            if len(cur) != 3:
                raise _fail(i, raw, f"needs a [h, w, c] input, got {list(cur)}")
            size = _int(i, {**p, "type": kind}, "size", 1, 64)
            p["stride"] = size if p["stride"] is None else p["stride"]
            s = _int(i, {**p, "type": kind}, "stride", 1, 64)
            h, w, c = cur
            oh, ow = (h - size) // s + 1, (w - size) // s + 1
            if oh < 1 or ow < 1:
                raise _fail(i, raw, f"pool size {size} does not fit the {h}x{w} input")
            cur = (oh, ow, c)
        elif kind == "dense":
            if len(cur) != 1:
                raise _fail(i, raw, f"needs a flat input (add a 'flatten' layer), got {list(cur)}")
            units = _int(i, {**p, "type": kind}, "units", 1, 1_000_000)
            lw = [Weight(f"{name}/kernel", (cur[0], units), cur[0], units, False),
                  Weight(f"{name}/bias", (units,), cur[0], units, True)]
            cur = (units,)
        elif kind == "flatten":
            cur = (math.prod(cur),)
        elif kind == "dropout":
            rate = p["rate"]
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
                raise _fail(i, raw, f"'rate' must be a number in [0, 1), got {rate!r}")
        if "activation" in p and p["activation"] not in ACTIVATIONS:
            raise _fail(i, raw, f"unknown activation {p['activation']!r}; allowed: {', '.join(ACTIVATIONS)}")
        layers.append(Layer(kind, name, p, cur, tuple(lw)))
        weights.extend(lw)
    net = Network(tuple(layers), input_shape, tuple(weights))
    last = layers[-1] if layers else None
    ends_softmax = last is not None and (last.type == "softmax" or (last.type == "dense" and last.params["activation"] == "softmax"))
    if not ends_softmax or len(cur) != 1:
        raise MlitbError(ErrorCode.INVALID_NETWORK, "the network must end in a softmax classifier (dense with activation 'softmax', or a 'softmax' layer)")
    if net.param_count > MAX_PARAMS:
        raise MlitbError(ErrorCode.INVALID_NETWORK, f"network has {net.param_count} parameters; at most {MAX_PARAMS}")
    if net.param_count == 0:
        raise MlitbError(ErrorCode.INVALID_NETWORK, "network has no trainable parameters")
    return net


PAPER_NETWORK = [
    {"type": "input", "shape": [28, 28, 1]},
    {"type": "conv2d", "filters": 16, "kernel": 5, "stride": 1, "padding": "same", "activation": "relu"},
    {"type": "maxpool2d", "size": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 10, "activation": "softmax"},
]
