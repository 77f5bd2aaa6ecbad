"""The torch engine's compute core: the twin of the browser's `GradientComputer` (web/src/compute/gradients.ts).

Same contract: set the flat parameters (our order), then sum per-sample gradients of the categorical
cross-entropy (probabilities clipped to [1e-7, 1 - 1e-7], as Keras) over shuffled mini-batches for as
long as the work time allows (at least one batch), or over exactly the examples a deterministic round
names; evaluate the error on a test set; predict class probabilities. Results come back as float32 in
our flat order (`layout.py` converts once each way).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from mlitb.codec.committed import Commitment
from mlitb.errors import ErrorCode, MlitbError
from mlitb.trust.commitments import Committer, directions
from mlitb.model.spec import Network
from mlitb.workers.native.network import TorchNet

EPSILON = 1e-7  # Keras' clip for log(p), as the browser
EVAL_BATCH_SIZE = 256


@dataclass
class GradientResult:
    grad: np.ndarray  # float32 [P], our order: the sum over samples of the per-sample gradient
    samples: int
    loss_sum: float
    ms: float


def pick_device(name: str) -> torch.device:
    """'cpu', 'cuda' (an error if none is usable) or 'auto' (cuda if usable, else cpu)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: PyTorch sees no usable CUDA device (torch.cuda.is_available() is False)")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; use cpu, cuda or auto")
    return torch.device(name)


class TorchEngine:
    def __init__(self, network: Network, device: str | torch.device = "cpu", seed: int | None = None):
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.network = network
        self.model = TorchNet(network).to(self.device)
        self.layout = self.model.layout
        self.param_count = self.layout.param_count
        self.num_classes = network.num_classes
        self._params = list(self.model.parameters())
        self._gen = torch.Generator().manual_seed(seed if seed is not None else int(time.time_ns() % 2**31))
        self._images: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None
        self._order = torch.zeros(0, dtype=torch.int64)
        self._cursor = 0
        self._sample_s: float | None = None  # measured seconds per sample of a full batch (moving average)

    # ---- parameters -----------------------------------------------------------------------------
    def set_params(self, ours: np.ndarray) -> None:
        if ours.shape != (self.param_count,):
            raise MlitbError(ErrorCode.WRONG_LENGTH, f"{ours.size} parameters; this model has {self.param_count}")
        flat = torch.from_numpy(self.layout.to_torch(ours)).to(self.device)
        with torch.no_grad():
            off = 0
            for p in self._params:
                p.copy_(flat[off:off + p.numel()].view_as(p))
                off += p.numel()

    def get_params(self) -> np.ndarray:
        with torch.no_grad():
            theirs = torch.cat([p.reshape(-1) for p in self._params]).cpu().numpy()
        return self.layout.to_ours(theirs)

    def warm_up(self, batch_size: int) -> None:
        """One forward and backward pass on blank images: the first pass allocates and picks kernels (hundreds
        of ms on a CPU, more on a GPU), which would otherwise come off the first round's work time."""
        self.model.train()
        x = torch.zeros((max(1, batch_size), *self.network.input_shape), dtype=torch.uint8, device=self.device)
        self.model(x).sum().backward()
        for p in self._params:
            p.grad = None

    # ---- data -----------------------------------------------------------------------------------
    def hold(self, images: np.ndarray, labels: np.ndarray) -> None:
        """The examples to train on (uint8 [n, ...input shape], labels [n]); kept on the device."""
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if len(labels) and int(labels.max()) >= self.num_classes:
            raise ValueError(f"label {int(labels.max())} is not below {self.num_classes} classes")
        self._images = torch.from_numpy(np.require(images, requirements=["C", "W"])).to(self.device)
        self._labels = torch.from_numpy(labels.astype(np.int64)).to(self.device)
        self._order, self._cursor = torch.zeros(0, dtype=torch.int64), 0

    @property
    def held(self) -> int:
        return 0 if self._labels is None else len(self._labels)

    def _next_indices(self, n: int) -> torch.Tensor:
        """The next n positions of a shuffled visiting order, so every example is used once per epoch."""
        out = []
        while n > 0:
            if self._cursor == len(self._order):
                self._order, self._cursor = torch.randperm(self.held, generator=self._gen), 0
            take = self._order[self._cursor:self._cursor + n]
            self._cursor += len(take)
            n -= len(take)
            out.append(take)
        return out[0] if len(out) == 1 else torch.cat(out)

    # ---- training -------------------------------------------------------------------------------
    def _batch_loss(self, idx: torch.Tensor) -> torch.Tensor:
        idx = idx.to(self.device)
        probs = self.model(self._images[idx])
        p = probs.clamp(EPSILON, 1 - EPSILON)
        return -torch.log(p).gather(1, self._labels[idx].unsqueeze(1)).sum()

    def _start(self) -> None:
        if self.held < 1:
            raise ValueError("no examples to train on")
        self.model.train()
        for p in self._params:
            p.grad = None

    def _result(self, samples: int, loss_sum: float, start: float) -> GradientResult:
        theirs = torch.cat([p.grad.reshape(-1) for p in self._params]).cpu().numpy()
        return GradientResult(self.layout.to_ours(theirs), samples, loss_sum, (time.perf_counter() - start) * 1000)

    def compute_for(self, work_ms: float, batch_size: int) -> GradientResult:
        """Summed gradient over as many shuffled mini-batches as fit in `work_ms` (at least one sample). A batch
        that would overrun the work time at the measured time per sample is cut to what fits (the sum does not
        depend on how the samples are batched), so the result is on time even when one full batch is not."""
        self._start()
        bs = max(1, min(batch_size, self.held))
        start = time.perf_counter()
        end = start + work_ms / 1000
        samples, loss_sum = 0, 0.0
        while True:
            n = bs
            if self._sample_s is not None:
                fit = int((end - time.perf_counter()) / self._sample_s)
                if fit < 1 and samples:
                    break
                n = max(1, min(bs, fit))
            t0 = time.perf_counter()
            loss = self._batch_loss(self._next_indices(n))
            loss.backward()  # .grad accumulates: the per-sample gradients summed
            loss_sum += loss.item()  # also waits for an asynchronous (CUDA) device: the clock stays honest
            samples += n
            now = time.perf_counter()
            if n == bs:  # full batches only: a cut one costs more per sample and would skew the estimate
                per = (now - t0) / n
                self._sample_s = per if self._sample_s is None else 0.7 * self._sample_s + 0.3 * per
            if now >= end:
                break
        return self._result(samples, loss_sum, start)

    def compute_committed(self, work_ms: float, batch_size: int, order: np.ndarray,
                          seed: int) -> tuple[GradientResult, Commitment]:
        """A spot-checked round: the summed gradient over the held positions `order` (the WORK seed's order,
        cycling) for as long as `work_ms` allows, with the per-batch commitments of mlitb/trust/commitments.py
        (batches of `batch_size` examples of the order; a sub-batch cut by the clock never crosses one). Each
        sub-batch's gradient is projected on the device (float64) before it joins the sum, so a batch's
        projections are of that batch alone, not differences of a growing float32 sum."""
        if len(order) < 1:
            raise ValueError("no examples to compute on")
        self._start()
        bs = max(1, min(batch_size, len(order)))
        committer = Committer(seed, 0, bs)  # its directions are ours, on the device below, in torch's order
        dirs = torch.from_numpy(np.stack([self.layout.to_torch(d) for d in directions(seed, self.param_count)]))
        dirs = dirs.to(self.device, torch.float64)
        acc = [torch.zeros_like(p) for p in self._params]
        start = time.perf_counter()
        end = start + work_ms / 1000
        samples, loss_sum = 0, 0.0
        positions = torch.from_numpy(order.astype(np.int64))
        while True:
            n = min(bs, committer.room())
            if self._sample_s is not None:
                fit = int((end - time.perf_counter()) / self._sample_s)
                if fit < 1 and samples:
                    break
                n = max(1, min(n, fit))
            t0 = time.perf_counter()
            loss = self._batch_loss(positions[(torch.arange(samples, samples + n)) % len(positions)])
            loss.backward()
            flat = torch.cat([p.grad.reshape(-1) for p in self._params]).to(torch.float64)
            for a, p in zip(acc, self._params):
                a += p.grad
                p.grad = None
            value = loss.item()  # also waits for an asynchronous (CUDA) device: the clock stays honest
            committer.add_projections((dirs @ flat).cpu().numpy(), value, n)
            loss_sum += value
            samples += n
            now = time.perf_counter()
            if n == bs:
                per = (now - t0) / n
                self._sample_s = per if self._sample_s is None else 0.7 * self._sample_s + 0.3 * per
            if now >= end:
                break
        for a, p in zip(acc, self._params):
            p.grad = a
        return self._result(samples, loss_sum, start), committer.commitment()

    def compute_on(self, positions: np.ndarray, batch_size: int) -> GradientResult:
        """Deterministic rounds: the summed gradient over exactly these held positions, in this order."""
        if len(positions) < 1:
            raise ValueError("no examples to compute on")
        if int(positions.max()) >= self.held:
            raise ValueError(f"example {int(positions.max())} is not below {self.held}")
        self._start()
        start = time.perf_counter()
        idx = torch.from_numpy(positions.astype(np.int64))
        loss_sum = 0.0
        for s in range(0, len(idx), max(1, batch_size)):
            loss = self._batch_loss(idx[s:s + batch_size])
            loss.backward()
            loss_sum += loss.item()
        return self._result(len(idx), loss_sum, start)

    # ---- evaluation and prediction ------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, images: np.ndarray) -> np.ndarray:
        self.model.eval()
        x = torch.from_numpy(np.require(images, requirements=["C", "W"])).to(self.device)
        out = [self.model(x[s:s + EVAL_BATCH_SIZE]) for s in range(0, len(x), EVAL_BATCH_SIZE)]
        return torch.cat(out).cpu().numpy() if out else np.zeros((0, self.num_classes), np.float32)

    @torch.no_grad()
    def evaluate(self, images: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
        """(error rate, mean loss) on a labelled set, in inference mode (dropout off)."""
        probs = torch.from_numpy(self.predict(images))
        y = torch.from_numpy(labels.astype(np.int64))
        if len(y) == 0:
            return 0.0, 0.0
        wrong = int((probs.argmax(1) != y).sum())
        loss = float(-torch.log(probs.clamp(EPSILON, 1 - EPSILON)).gather(1, y.unsqueeze(1)).sum())
        return wrong / len(y), loss / len(y)


def engine_from_artifacts(model: dict, weights: bytes, device: str | torch.device = "cpu") -> TorchEngine:
    """A saved model (model.json as a dict, weights.bin as bytes: TF.js Layers artifacts) as a TorchEngine."""
    from mlitb.workers.native.network import network_from_model_json

    engine = TorchEngine(network_from_model_json(model), device)
    flat = np.frombuffer(weights, "<f4")
    if flat.size != engine.param_count:
        raise MlitbError(ErrorCode.WRONG_LENGTH, f"weights.bin holds {flat.size} float32; the model has {engine.param_count}")
    engine.set_params(flat.astype(np.float32))
    return engine
