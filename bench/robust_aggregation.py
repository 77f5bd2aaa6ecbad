"""Prints the paper network's MNIST test error under hostile clients for each aggregation rule (mean, clipped_mean, median, trimmed_mean).

Simulated in-memory trainers (`MemoryTrainer`) join a real `ProjectRuntime` with the paper's
network (conv 5x5x16 same + ReLU -> maxpool 2 -> dense 10 softmax, 31,786 parameters) on
MNIST and answer every round with the summed cross-entropy gradient of one mini-batch of
their allocated examples, computed by PyTorch (1 thread) from the server's flat parameter
vector in TF.js order. A fraction of the trainers (default 20%) is hostile, one kind per
scenario: `scaled` (the honest gradient x 100), `sign_flipped` (x -10), `random` (Gaussian
noise, std 10 per coordinate, per sample), `spike` (the honest gradient x 10^4 in the first
round only, honest afterwards: it inflates AdaGrad's squared-gradient history once),
`nan` (all NaN: the round loop refuses it before aggregation; the refusals are counted and
the round waits for its deadline, T = 1 s). `none` is the baseline without hostile trainers. After R rounds the test error of the server's
parameters is measured on the MNIST test set; the last lines are a table of errors.

Run:  .venv/bin/python bench/robust_aggregation.py [--clients 10] [--hostile 0.2] [--rounds 40]
Needs PyTorch (`pip install -e .[torch]`); without it, says so and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mlitb.config import Settings  # noqa: E402
from mlitb.data import Dataset, Split, load_mnist  # noqa: E402
from mlitb.master.loop import ProjectRuntime  # noqa: E402
from mlitb.master.project import ProjectSpec  # noqa: E402
from mlitb.model import PAPER_NETWORK  # noqa: E402
from mlitb.workers.simulated import MemoryTrainer  # noqa: E402

RULES = ("mean", "clipped_mean", "median", "trimmed_mean")
KINDS = ("none", "scaled", "sign_flipped", "random", "spike", "nan")
SCALE, FLIP, NOISE_STD, SPIKE = 100.0, -10.0, 10.0, 1e4

# paper network shapes, TF.js order of the flat vector: conv kernel [kh, kw, in, out], conv bias,
# dense kernel [in, out] whose rows follow TF.js's flatten of [h, w, c], dense bias
K, C_OUT, POOLED = 5, 16, 14
CONV_K, CONV_B, DENSE_K, DENSE_B = (K, K, 1, C_OUT), (C_OUT,), (POOLED * POOLED * C_OUT, 10), (10,)
SIZES = [int(np.prod(s)) for s in (CONV_K, CONV_B, DENSE_K, DENSE_B)]
P = sum(SIZES)


def split(flat: np.ndarray) -> list[np.ndarray]:
    out, at = [], 0
    for shape, size in zip((CONV_K, CONV_B, DENSE_K, DENSE_B), SIZES):
        out.append(flat[at:at + size].reshape(shape))
        at += size
    return out


def tf_to_torch(flat: np.ndarray) -> list[np.ndarray]:
    """TF.js flat vector -> torch (conv.weight [out,in,kh,kw], conv.bias, fc.weight [10, CHW], fc.bias)."""
    ck, cb, dk, db = split(flat)
    conv_w = ck.transpose(3, 2, 0, 1)
    # dense rows are indexed (h, w, c) by TF.js's flatten; torch's Flatten of NCHW indexes (c, h, w)
    fc_w = dk.reshape(POOLED, POOLED, C_OUT, 10).transpose(2, 0, 1, 3).reshape(-1, 10).T
    return [np.ascontiguousarray(a, dtype=np.float32) for a in (conv_w, cb, fc_w, db)]


def torch_to_tf(conv_w: np.ndarray, cb: np.ndarray, fc_w: np.ndarray, db: np.ndarray) -> np.ndarray:
    """The inverse of `tf_to_torch` (used for gradients)."""
    ck = conv_w.transpose(2, 3, 1, 0)
    dk = fc_w.T.reshape(C_OUT, POOLED, POOLED, 10).transpose(1, 2, 0, 3).reshape(-1, 10)
    return np.concatenate([a.astype(np.float32).ravel() for a in (ck, cb, dk, db)])


def numpy_tf_loss(flat: np.ndarray, images: np.ndarray, labels: np.ndarray) -> float:
    """Summed cross-entropy of the paper network computed directly in TF.js layout (NHWC), as a check."""
    ck, cb, dk, db = split(flat)
    x = images.astype(np.float64) / 255.0  # (n, 28, 28, 1)
    xp = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))  # 'same' padding for a 5x5 kernel, stride 1
    conv = np.zeros((len(x), 28, 28, C_OUT))
    for i in range(K):
        for j in range(K):
            conv += np.einsum("nhwc,cf->nhwf", xp[:, i:i + 28, j:j + 28, :], ck[i, j])
    a = np.maximum(conv + cb, 0)
    pooled = a.reshape(len(x), POOLED, 2, POOLED, 2, C_OUT).max(axis=(2, 4))
    logits = pooled.reshape(len(x), -1) @ dk + db  # flatten in (h, w, c) order, as TF.js
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(x)), labels].sum())


class TorchNet:
    def __init__(self):
        import torch
        from torch import nn

        torch.set_num_threads(1)
        self.torch = torch
        self.model = nn.Sequential(nn.Conv2d(1, C_OUT, K, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                   nn.Linear(C_OUT * POOLED * POOLED, 10))
        self.loss = nn.CrossEntropyLoss(reduction="sum")  # softmax + summed per-sample cross-entropy
        self.params = [self.model[0].weight, self.model[0].bias, self.model[4].weight, self.model[4].bias]

    def load(self, flat: np.ndarray) -> None:
        with self.torch.no_grad():
            for p, a in zip(self.params, tf_to_torch(flat)):
                p.copy_(self.torch.from_numpy(a))

    def _inputs(self, images: np.ndarray):
        return self.torch.from_numpy(images.transpose(0, 3, 1, 2).astype(np.float32) / 255.0)

    def gradient(self, flat: np.ndarray, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
        """(summed gradient in TF.js order, summed loss) of one batch."""
        self.load(flat)
        self.model.zero_grad(set_to_none=True)
        loss = self.loss(self.model(self._inputs(images)), self.torch.from_numpy(labels.astype(np.int64)))
        loss.backward()
        return torch_to_tf(*(p.grad.numpy() for p in self.params)), float(loss.detach())

    def summed_loss(self, flat: np.ndarray, images: np.ndarray, labels: np.ndarray) -> float:
        self.load(flat)
        with self.torch.no_grad():
            return float(self.loss(self.model(self._inputs(images)), self.torch.from_numpy(labels.astype(np.int64))))

    def error(self, flat: np.ndarray, images: np.ndarray, labels: np.ndarray) -> float:
        self.load(flat)
        wrong = 0
        with self.torch.no_grad():
            for at in range(0, len(images), 1000):
                pred = self.model(self._inputs(images[at:at + 1000])).argmax(1).numpy()
                wrong += int((pred != labels[at:at + 1000]).sum())
        return wrong / len(images)


def check_layout(net: TorchNet, flat: np.ndarray, data: Dataset) -> float:
    """The weights reach torch in the right places and its gradients come back in TF.js order.

    The summed loss in torch equals a NumPy forward pass that reads the flat vector in TF.js
    layout (a dense kernel read in the wrong flatten order changes it by ~1e-3 relative), the
    conversion is a lossless permutation, and torch's gradient of dense weights equals central
    differences of the NumPy loss (dense weights: no ReLU or max-pool kink near them).
    """
    images, labels = data.train.images[:64], data.train.labels[:64]
    ref, got = numpy_tf_loss(flat, images, labels), net.summed_loss(flat, images, labels)
    if not abs(ref - got) <= 1e-5 * abs(ref):
        raise SystemExit(f"layout check failed: NumPy TF.js-order loss {ref:.6f} vs torch {got:.6f}")
    if not np.array_equal(torch_to_tf(*tf_to_torch(flat)), flat):
        raise SystemExit("layout check failed: TF.js -> torch -> TF.js does not give the same vector back")
    grad, _ = net.gradient(flat, images, labels)
    dense_start = SIZES[0] + SIZES[1]
    for i in (dense_start, dense_start + 1234, dense_start + 20_001, P - 11, P - 1):
        step = np.zeros(P)
        step[i] = 1e-3
        numeric = (numpy_tf_loss(flat + step, images, labels) - numpy_tf_loss(flat - step, images, labels)) / 2e-3
        if not abs(numeric - grad[i]) <= 1e-3 * max(1.0, abs(numeric)):
            raise SystemExit(f"layout check failed: gradient {i} is {grad[i]:.6f} in torch, {numeric:.6f} numerically")
    return ref / len(labels)


def hostile_gradient(kind: str, honest: np.ndarray, n: int, rng: np.random.Generator, round: int) -> np.ndarray:
    if kind == "spike":
        return honest * np.float32(SPIKE) if round == 0 else honest
    if kind == "scaled":
        return honest * np.float32(SCALE)
    if kind == "sign_flipped":
        return honest * np.float32(FLIP)
    if kind == "random":
        return (rng.standard_normal(P) * NOISE_STD * n).astype(np.float32)
    if kind == "nan":
        return np.full(P, np.nan, np.float32)
    raise ValueError(kind)


async def scenario(rule: str, kind: str, args, net: TorchNet, data: Dataset) -> dict:
    spec = ProjectSpec(name="robust", dataset="mnist", network=PAPER_NETWORK, seed=args.seed,
                       hyper={"period_s": 1, "learning_rate": args.learning_rate, "aggregation": rule,
                              "clip_norm": args.clip_norm, "trim_fraction": args.trim_fraction})
    rt = ProjectRuntime(1, spec, spec.build_network(), data, Settings())
    hostile = 0 if kind == "none" else max(1, round(args.hostile * args.clients))
    rng = np.random.default_rng(args.seed)
    train = data.train

    def trainer(bad: bool):
        def gradient_fn(params: np.ndarray, ids: np.ndarray):
            batch = rng.choice(ids, size=min(args.batch, len(ids)), replace=False)
            if bad and kind == "random":
                return hostile_gradient(kind, None, len(batch), rng, rt.round), len(batch), 0.0
            grad, loss = net.gradient(params, train.images[batch], train.labels[batch])
            if bad:
                grad = hostile_gradient(kind, grad, len(batch), rng, rt.round)
            return grad, len(batch), loss
        return gradient_fn

    clients = [MemoryTrainer(rt, trainer(i < hostile)) for i in range(args.clients)]
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    for _ in range(args.rounds):
        await rt.run_round()
    for c in clients:
        c.leave()
    seconds = time.perf_counter() - t0
    test = data.test
    n_test = min(args.test_examples, len(test))
    err = net.error(rt.params, test.images[:n_test], test.labels[:n_test]) if np.isfinite(rt.params).all() else 1.0
    return {"rule": rule, "kind": kind, "hostile": hostile, "error": err, "refused": rt.rejected_total,
            "finite": bool(np.isfinite(rt.params).all()), "seconds": seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=10, help="simulated trainers (default 10)")
    ap.add_argument("--hostile", type=float, default=0.2, help="fraction of hostile trainers (default 0.2)")
    ap.add_argument("--rounds", type=int, default=40, help="rounds per scenario (default 40)")
    ap.add_argument("--batch", type=int, default=50, help="examples per trainer per round (default 50)")
    ap.add_argument("--learning-rate", type=float, default=0.05, help="AdaGrad learning rate (default 0.05)")
    ap.add_argument("--clip-norm", type=float, default=1.0, help="clipped_mean's max norm (default 1.0)")
    ap.add_argument("--trim-fraction", type=float, default=0.2, help="trimmed_mean's beta (default 0.2)")
    ap.add_argument("--train-examples", type=int, default=20_000,
                    help="first MNIST training examples shared out to the trainers (default 20000)")
    ap.add_argument("--test-examples", type=int, default=10_000, help="MNIST test examples evaluated (default all)")
    ap.add_argument("--rules", default=",".join(RULES), help="comma-separated rules (default all)")
    ap.add_argument("--kinds", default=",".join(KINDS), help="comma-separated hostile kinds (default all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not importable: install the optional extra (pip install -e '.[torch]') to run this benchmark")
        return 2
    logging.getLogger("mlitb").setLevel(logging.ERROR)
    rules, kinds = args.rules.split(","), args.kinds.split(",")
    mnist = load_mnist()
    data = Dataset("mnist", mnist.labels, Split(mnist.train.images[:args.train_examples],
                                                mnist.train.labels[:args.train_examples]), mnist.test)
    net = TorchNet()
    init = ProjectSpec(name="robust", network=PAPER_NETWORK, seed=args.seed)
    rt0 = ProjectRuntime(0, init, init.build_network(), data, Settings())
    assert rt0.param_count == P, rt0.param_count
    loss0 = check_layout(net, rt0.params, data)
    print(f"paper network, {P:,} parameters; layout check passed: torch's initial loss ({loss0:.4f}/sample) and "
          f"dense gradients equal a NumPy computation in TF.js order")
    print(f"{args.clients} trainers, {args.batch} examples each per round, {args.rounds} rounds, AdaGrad lr "
          f"{args.learning_rate}; hostile fraction {args.hostile}; clip_norm {args.clip_norm}, "
          f"trim_fraction {args.trim_fraction}")
    results = {}
    for kind in kinds:
        for rule in rules:
            r = asyncio.run(scenario(rule, kind, args, net, data))
            results[kind, rule] = r
            extra = f", refused {r['refused']}" if r["refused"] else ""
            print(f"  {kind:>12} | {rule:>12} | hostile {r['hostile']:2d} | test error {100 * r['error']:6.2f}%"
                  f"{'' if r['finite'] else ' (parameters not finite)'}{extra} | {r['seconds']:.1f}s", flush=True)
    print(f"\ntest error after {args.rounds} rounds ({args.clients} trainers, "
          f"{round(args.hostile * args.clients)} hostile; MNIST test set)")
    print(f"{'hostile kind':>14} " + " ".join(f"{r:>13}" for r in rules))
    for kind in kinds:
        print(f"{kind:>14} " + " ".join(f"{100 * results[kind, r]['error']:12.2f}%" for r in rules))
    refused = {k: results[k, rules[0]]["refused"] for k in kinds if results[k, rules[0]]["refused"]}
    if refused:
        print("gradients refused by the round loop (NON_FINITE), per rule run: "
              + ", ".join(f"{k} {v}" for k, v in refused.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
