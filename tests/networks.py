"""Networks shared by the parity tests (torch vs browser, tests/e2e/test_torch_parity.py) and the NumPy verifier's
tests (tests/unit/test_numpy_conv.py): every layer type the spec allows, and a CIFAR-size conv net."""

EVERY_LAYER = [
    {"type": "input", "shape": [12, 11, 3]},
    {"type": "conv2d", "filters": 6, "kernel": 3, "stride": 2, "padding": "same", "activation": "tanh"},
    {"type": "conv2d", "filters": 5, "kernel": 2, "stride": 1, "padding": "same", "activation": "sigmoid"},
    {"type": "relu"},
    {"type": "maxpool2d", "size": 2, "stride": 1},
    {"type": "conv2d", "filters": 4, "kernel": 3, "stride": 1, "padding": "valid", "activation": "linear"},
    {"type": "tanh"},
    {"type": "maxpool2d", "size": 2},
    {"type": "flatten"},
    {"type": "dropout", "rate": 0.0},
    {"type": "dense", "units": 7, "activation": "relu"},
    {"type": "sigmoid"},
    {"type": "dense", "units": 6, "activation": "tanh"},
    {"type": "dense", "units": 4, "activation": "linear"},
    {"type": "softmax"},
]
CIFAR = [
    {"type": "input", "shape": [32, 32, 3]},
    {"type": "conv2d", "filters": 32, "kernel": 3, "padding": "same", "activation": "relu"},
    {"type": "conv2d", "filters": 32, "kernel": 3, "padding": "same", "activation": "relu"},
    {"type": "maxpool2d", "size": 2},
    {"type": "conv2d", "filters": 64, "kernel": 3, "padding": "same", "activation": "relu"},
    {"type": "conv2d", "filters": 64, "kernel": 3, "padding": "same", "activation": "relu"},
    {"type": "maxpool2d", "size": 2},
    {"type": "flatten"},
    {"type": "dense", "units": 3, "activation": "softmax"},
]
