"""Measures the honest cross-engine difference a spot check must tolerate, per network: NumPy (the master's
verifier, batches of 256) against the torch worker summing sub-batches of 32 as the browser trainer does.

For each network, at its initial weights and after --steps of SGD (a trained model's summed gradient cancels
more, so float32 rounding is a larger share of it), over --count MNIST examples, prints the relative L2
difference ||torch - numpy|| / ||numpy|| of the summed gradient (what spot_check.relative_difference measures)
and the relative loss difference; and, for the trained state, how far two work-saving fakes are from it. The browser's wasm trainer against NumPy is measured by
tests/e2e/test_torch_parity.py (test_numpy_verifier_matches_the_browser_trainer) and
tests/e2e/test_spot_checks_browser.py; the tolerance per network (spot_check.tolerance_for) is set from both.
The CIFAR-size network reads MNIST digits padded to 32x32 and repeated over 3 channels (no CIFAR on this machine).

Run:  .venv/bin/python bench/spot_check_tolerance.py [--count 512] [--steps 40]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlitb.model import PAPER_NETWORK, glorot_init, parse_network  # noqa: E402
from mlitb.trust.numpy_net import gradient_sum  # noqa: E402
from mlitb.trust.spot_check import relative_difference, tolerance_for  # noqa: E402
from mlitb.workers.native.engine import TorchEngine  # noqa: E402
from bench._trust_common import arguments  # noqa: E402
from tests.mnist_softmax import SOFTMAX_REGRESSION, mnist_subset  # noqa: E402
from tests.networks import CIFAR  # noqa: E402

HIDDEN = [{"type": "input", "shape": [28, 28, 1]}, {"type": "flatten"},
          {"type": "dense", "units": 256, "activation": "relu"}, {"type": "dense", "units": 10, "activation": "softmax"}]
CIFAR10 = CIFAR[:-1] + [{"type": "dense", "units": 10, "activation": "softmax"}]
NETWORKS = {"softmax regression": SOFTMAX_REGRESSION, "hidden layer 256": HIDDEN, "paper conv": PAPER_NETWORK,
            "cifar-size conv": CIFAR10}


def images_for(net, images: np.ndarray) -> np.ndarray:
    if net.input_shape == (32, 32, 3):
        return np.repeat(np.pad(images, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=3)
    return images


def main(args) -> None:
    torch.set_num_threads(1)
    data = mnist_subset(args.count + args.steps * 32, 10)
    rng = np.random.default_rng(0)
    print(f"{args.count} examples; torch sums sub-batches of 32 (as the browser), NumPy batches of 256")
    for name, spec in NETWORKS.items():
        net = parse_network(spec)
        images, labels = images_for(net, data.train.images), data.train.labels
        params = glorot_init(net, 0)
        engine = TorchEngine(net, "cpu")
        engine.hold(images[:args.count], labels[:args.count])
        previous = params
        for state in ("initial", "trained"):
            if state == "trained":
                for s in range(args.steps):  # plain SGD on other examples, so the checked sum cancels as in practice
                    at = args.count + 32 * s
                    g, _ = gradient_sum(net, params, images[at:at + 32], labels[at:at + 32])
                    previous, params = params, params - np.float32(args.lr / 32) * g
            engine.set_params(params)
            order = rng.permutation(args.count)
            r = engine.compute_on(order, batch_size=32)
            grad, loss = gradient_sum(net, params, images[order], labels[order])
            diff = relative_difference(r.grad, grad)
            print(f"{name:>20} {state:>8}: gradient rel L2 {diff:.2e}, loss rel {abs(r.loss_sum - loss) / loss:.2e}, "
                  f"|grad| {np.linalg.norm(grad):.3g}, tolerance {tolerance_for(net):.1e} "
                  f"(margin {tolerance_for(net) / max(diff, 1e-12):.0f}x)")
            if state == "trained":  # fakes that save work: 90% of the examples scaled up; the previous step's weights
                part = order[:int(0.9 * args.count)]
                lazy, _ = gradient_sum(net, params, images[part], labels[part])
                stale, _ = gradient_sum(net, previous, images[order], labels[order])
                print(f"{'':>20} {'fakes':>8}: 90% of the examples {relative_difference(lazy / np.float32(0.9), grad):.2e}, "
                      f"the previous step's weights {relative_difference(stale, grad):.2e}")


if __name__ == "__main__":
    main(arguments(__doc__, count=512, steps=40, lr=0.1))
