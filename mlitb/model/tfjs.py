"""Network <-> TF.js Layers artifacts (model.json topology + weight manifest + one binary buffer).

The artifacts load with stock `tf.loadLayersModel`; the weight order of the manifest is
the order of the server's flat float32 parameter vector.
"""

from __future__ import annotations

import numpy as np

from mlitb.model.spec import Network

WEIGHTS_FILE = "weights.bin"
_ACT_LAYER = {"relu", "tanh", "sigmoid", "softmax"}


def _layer_config(net: Network, index: int) -> dict:
    layer = net.layers[index]
    p = layer.params
    cfg: dict = {"name": layer.name, "trainable": True, "dtype": "float32"}
    if index == 0:
        cfg["batch_input_shape"] = [None, *net.input_shape]
    if layer.type == "conv2d":
        cfg.update(
            filters=p["filters"], kernel_size=[p["kernel"], p["kernel"]], strides=[p["stride"], p["stride"]],
            padding=p["padding"], data_format="channels_last", dilation_rate=[1, 1],
            activation=p["activation"], use_bias=True,
        )
        return {"class_name": "Conv2D", "config": cfg}
    if layer.type == "maxpool2d":
        cfg.update(pool_size=[p["size"], p["size"]], strides=[p["stride"], p["stride"]],
                   padding="valid", data_format="channels_last")
        return {"class_name": "MaxPooling2D", "config": cfg}
    if layer.type == "dense":
        cfg.update(units=p["units"], activation=p["activation"], use_bias=True)
        return {"class_name": "Dense", "config": cfg}
    if layer.type == "flatten":
        return {"class_name": "Flatten", "config": cfg}
    if layer.type == "dropout":
        cfg.update(rate=p["rate"])
        return {"class_name": "Dropout", "config": cfg}
    if layer.type in _ACT_LAYER:
        cfg.update(activation=layer.type)
        return {"class_name": "Activation", "config": cfg}
    raise ValueError(f"no TF.js mapping for layer type {layer.type!r}")  # parse_network prevents this


def model_json(net: Network, name: str, weights_path: str = WEIGHTS_FILE) -> dict:
    """The model.json document: Sequential topology plus a one-file weight manifest."""
    return {
        "format": "layers-model",
        "generatedBy": "mlitb",
        "convertedBy": None,
        "modelTopology": {
            "class_name": "Sequential",
            "config": {"name": name, "layers": [_layer_config(net, i) for i in range(len(net.layers))]},
            "keras_version": "tfjs-layers 4.22.0",
            "backend": "tensor_flow.js",
        },
        "weightsManifest": [{
            "paths": [weights_path],
            "weights": [{"name": w.name, "shape": list(w.shape), "dtype": "float32"} for w in net.weights],
        }],
    }


def glorot_init(net: Network, seed: int) -> np.ndarray:
    """Glorot-uniform kernels and zero biases, as one flat float32 vector in manifest order."""
    rng = np.random.default_rng(seed)
    parts = []
    for w in net.weights:
        if w.is_bias:
            parts.append(np.zeros(w.size, dtype=np.float32))
        else:
            limit = np.sqrt(6.0 / (w.fan_in + w.fan_out))
            parts.append(rng.uniform(-limit, limit, w.size).astype(np.float32))
    return np.concatenate(parts)


def split_weights(net: Network, flat: np.ndarray) -> dict[str, np.ndarray]:
    """The flat vector as named arrays in their TF.js shapes (views, no copy)."""
    out, offset = {}, 0
    for w in net.weights:
        out[w.name] = flat[offset:offset + w.size].reshape(w.shape)
        offset += w.size
    return out
