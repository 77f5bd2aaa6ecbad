"""A project's network in PyTorch, built from the same spec the browser's TF.js model comes from.

`spec_from_model_json` reads the model.json a worker is pointed to by WELCOME (the topology our
server writes, `mlitb/model/tfjs.py`) back into our layer spec, refusing any layer it cannot build by
index, class and name; `parse_network` then validates it exactly as the server did. `TorchNet`
follows the layers one to one, with TF.js semantics: 'same' padding split as TF splits it
(the extra row or column at the bottom/right), max-pooling over 'valid' windows, softmax on the
channel axis, inverted dropout. Parameter layouts are `layout.py`'s business, not this file's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mlitb.errors import ErrorCode, MlitbError
from mlitb.model.spec import Network, parse_network
from mlitb.workers.native.layout import ParamLayout, to_nchw

_ACTIVATION_LAYERS = ("relu", "tanh", "sigmoid", "softmax")


def spec_from_model_json(model: dict) -> list[dict]:
    """The layer spec of a TF.js Layers model.json; a layer this engine cannot build is refused, named."""
    try:
        layers = model["modelTopology"]["config"]["layers"]
        shape = layers[0]["config"]["batch_input_shape"][1:]
    except (KeyError, IndexError, TypeError) as exc:
        raise MlitbError(ErrorCode.INVALID_NETWORK, f"model.json has no Sequential topology with an input shape ({exc!r})")
    spec: list[dict[str, Any]] = [{"type": "input", "shape": list(shape)}]
    for i, layer in enumerate(layers, start=1):
        kind, cfg = layer.get("class_name"), layer.get("config") or {}
        name = f"layer {i} ({kind} '{cfg.get('name', '?')}')"
        if kind == "Conv2D":
            k, s = cfg["kernel_size"], cfg["strides"]
            if k[0] != k[1] or s[0] != s[1] or cfg.get("dilation_rate", [1, 1]) != [1, 1] or not cfg.get("use_bias", True):
                raise _cannot(name, "only square kernels and strides, no dilation, with a bias")
            spec.append({"type": "conv2d", "filters": cfg["filters"], "kernel": k[0], "stride": s[0],
                         "padding": cfg["padding"], "activation": cfg.get("activation", "linear")})
        elif kind == "MaxPooling2D":
            p, s = cfg["pool_size"], cfg["strides"]
            if p[0] != p[1] or s[0] != s[1] or cfg.get("padding", "valid") != "valid":
                raise _cannot(name, "only square 'valid' pooling windows")
            spec.append({"type": "maxpool2d", "size": p[0], "stride": s[0]})
        elif kind == "Dense":
            if not cfg.get("use_bias", True):
                raise _cannot(name, "only dense layers with a bias")
            spec.append({"type": "dense", "units": cfg["units"], "activation": cfg.get("activation", "linear")})
        elif kind == "Flatten":
            spec.append({"type": "flatten"})
        elif kind == "Dropout":
            spec.append({"type": "dropout", "rate": cfg["rate"]})
        elif kind == "Activation" and cfg.get("activation") in _ACTIVATION_LAYERS:
            spec.append({"type": cfg["activation"]})
        else:
            raise _cannot(name, "no such layer in the torch engine")
    return spec


def _cannot(name: str, why: str) -> MlitbError:
    return MlitbError(ErrorCode.INVALID_NETWORK, f"the torch engine cannot build {name}: {why}")


def network_from_model_json(model: dict) -> Network:
    net = parse_network(spec_from_model_json(model))
    manifest = [(w["name"], tuple(w["shape"])) for group in model.get("weightsManifest", []) for w in group["weights"]]
    ours = [(w.name, w.shape) for w in net.weights]
    if manifest and [s for _, s in manifest] != [s for _, s in ours]:
        raise MlitbError(ErrorCode.INVALID_NETWORK, f"model.json's weight manifest {manifest} does not match its layers {ours}")
    return net


def _activation(name: str) -> nn.Module:
    return {"linear": nn.Identity, "relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid,
            "softmax": lambda: _Softmax()}[name]()


class _Softmax(nn.Module):
    """Softmax over the features: the last TF.js axis, which is PyTorch's channel axis of an NCHW map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(x, dim=1)


class _Conv(nn.Module):
    """A TF.js Conv2D: 'same' pads (k - 1 + ...) split with the extra row/column at the bottom/right."""

    def __init__(self, cin: int, p: dict, in_hw: tuple[int, int]):
        super().__init__()
        k, s = p["kernel"], p["stride"]
        self.conv = nn.Conv2d(cin, p["filters"], k, stride=s, padding=0)
        self.pad: tuple[int, int, int, int] | None = None
        self.sym = 0
        if p["padding"] == "same":
            pads = []
            for size in in_hw:
                out = -(-size // s)
                total = max((out - 1) * s + k - size, 0)
                pads.append((total // 2, total - total // 2))
            (top, bottom), (left, right) = pads
            if top == bottom == left == right:
                self.conv.padding = (top, top)
            else:
                self.pad = (left, right, top, bottom)
        self.act = _activation(p["activation"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        return self.act(self.conv(x))


class TorchNet(nn.Module):
    """The network's layers as PyTorch modules; parameters in our manifest's order of tensors."""

    def __init__(self, network: Network):
        super().__init__()
        self.network = network
        self.layout = ParamLayout(network)
        self.image_input = len(network.input_shape) == 3
        mods: list[nn.Module] = []
        shape = network.input_shape
        for layer in network.layers:
            p = layer.params
            if layer.type == "conv2d":
                mods.append(_Conv(shape[2], p, (shape[0], shape[1])))
            elif layer.type == "maxpool2d":
                mods.append(nn.MaxPool2d(p["size"], stride=p["stride"]))
            elif layer.type == "dense":
                mods.append(nn.Sequential(nn.Linear(shape[0], p["units"]), _activation(p["activation"])))
            elif layer.type == "flatten":
                mods.append(nn.Flatten())
            elif layer.type == "dropout":
                mods.append(nn.Dropout(p["rate"]))
            elif layer.type in _ACTIVATION_LAYERS:
                mods.append(_activation(layer.type))
            else:  # parse_network admits nothing else; a new layer type must be added here first
                raise _cannot(f"layer {layer.name}", "no such layer in the torch engine")
            shape = layer.output_shape
        self.body = nn.Sequential(*mods)
        params = list(self.parameters())
        got = [tuple(t.shape) for t in params]
        want = [s.shape for s in self.layout.shapes]
        if got != want:  # the builder and the layout disagree: a bug here, never the client's input
            raise AssertionError(f"torch parameters {got} differ from the layout's {want}")

    def forward(self, images_u8: torch.Tensor) -> torch.Tensor:
        """Class probabilities of uint8 NHWC images (flat features for a 1-D input), scaled to [0, 1] as the
        browser does (float32 division by 255)."""
        x = images_u8.to(torch.float32).div_(255)
        if self.image_input:
            x = to_nchw(x)
        return self.body(x)
