"""Prints whether the server's AdaGrad step is stable on the 455k dense network (bench/communication.py's
`--network 455k`) for a round size and learning rate: test error after 1, 5, 20, 50 and 100 steps and the
share of dead hidden units, per seed. NumPy only (mlitb.trust.numpy_net's gradient, mlitb's adagrad_step),
no server and no browser, so what it shows is the optimizer's, not the system's.

    .venv/bin/python bench/adagrad_stability.py --batch 256,1024 --lr 0.05 --seeds 4
"""

from __future__ import annotations

import argparse

import numpy as np

from mlitb.data.mnist import load_mnist
from mlitb.master.project import ProjectSpec
from mlitb.model import glorot_init
from mlitb.training.adagrad import adagrad_step
from mlitb.trust import numpy_net
from mlitb.workers.simulate import dense_network

REPORTED = (1, 5, 20, 50, 100)


def layers(params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """W1, b1, W2, b2 of the 784 -> H relu -> 10 softmax network, in TF.js order."""
    hidden = (params.size - 10) // (784 + 1 + 10)
    at = 784 * hidden
    w2_end = at + hidden + hidden * 10
    return (params[:at].reshape(784, hidden), params[at:at + hidden],
            params[at + hidden:w2_end].reshape(hidden, 10), params[w2_end:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", default="256,1024", help="examples per step (a round's samples), comma-separated")
    ap.add_argument("--lr", type=float, default=0.05, help="AdaGrad learning rate (bench/communication.py: 0.05)")
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=100)
    args = ap.parse_args()
    data = load_mnist()
    network = ProjectSpec(name="455k", network=dense_network(455000), hyper={}).build_network()
    test_x = data.test.images[:2000].reshape(2000, -1).astype(np.float32) / 255
    train_x = data.train.images[:2000].reshape(2000, -1).astype(np.float32) / 255
    for batch in (int(b) for b in args.batch.split(",")):
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            params = glorot_init(network, 0)
            history = np.zeros_like(params)
            errors = []
            for step in range(1, args.steps + 1):
                pick = rng.choice(len(data.train), batch, replace=False)
                grad, _ = numpy_net.gradient_sum(network, params, data.train.images[pick], data.train.labels[pick])
                adagrad_step(params, history, grad / np.float32(batch), learning_rate=args.lr)
                if step in REPORTED:
                    w1, b1, w2, b2 = layers(params)
                    logits = np.maximum(test_x @ w1 + b1, 0) @ w2 + b2
                    errors.append(f"{float((logits.argmax(1) != data.test.labels[:2000]).mean()):.3f}")
            w1, b1, _, _ = layers(params)
            dead = float(((train_x @ w1 + b1) <= 0).all(0).mean())
            print(f"batch {batch}, lr {args.lr:g}, seed {seed}: test error after steps "
                  f"{'/'.join(str(s) for s in REPORTED if s <= args.steps)}: {' '.join(errors)}; dead hidden units {dead:.0%}",
                  flush=True)


if __name__ == "__main__":
    main()
