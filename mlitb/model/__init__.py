"""Models: the allow-listed layer spec and its TF.js Layers artifacts."""

from mlitb.model.spec import PAPER_NETWORK, Layer, Network, Weight, parse_network
from mlitb.model.tfjs import WEIGHTS_FILE, glorot_init, model_json, split_weights

__all__ = ["PAPER_NETWORK", "Layer", "Network", "Weight", "parse_network",
           "WEIGHTS_FILE", "glorot_init", "model_json", "split_weights"]
