"""`mlitb closure replay`: re-run a deterministic-mode training from the closure's record and compare.

The record (written by the master in deterministic mode) holds the parameters and optimizer state the
recorded rounds start from and, per round, which examples each contribution used. Replay recomputes each
contribution's summed gradient over exactly those examples, in that order and batch size, with the
closure's stored browser code in headless Chromium, reduces them with the stored aggregation rule, takes
the AdaGrad step, and compares the replayed per-round losses and final weights with the recorded ones.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mlitb.closure.browser import ClosurePage, b64, closure_files
from mlitb.closure.format import communication, compressed, read_closure
from mlitb.closure.verify import load_split
from mlitb.errors import ErrorCode, MlitbError
from mlitb.training import make_aggregator, make_optimizer

DEFAULT_WEIGHT_TOLERANCE = 1e-4  # relative L2 distance of the final weights still counted as a match
DEFAULT_LOSS_TOLERANCE = 1e-4  # absolute difference of a round's mean training loss


@dataclass
class ReplayReport:
    ok: bool = False
    rounds: int = 0
    lines: list[str] = field(default_factory=list)
    loss_max_abs_diff: float = 0.0
    weights_max_abs_diff: float = 0.0
    weights_rel_l2: float = 0.0
    replayed_losses: list[float | None] = field(default_factory=list)
    recorded_losses: list[float | None] = field(default_factory=list)


def replay(path: str | Path, data: str | Path | None = None, backend: str = "wasm",
           weight_tolerance: float = DEFAULT_WEIGHT_TOLERANCE, loss_tolerance: float = DEFAULT_LOSS_TOLERANCE) -> ReplayReport:
    closure = read_closure(path)
    if compressed(closure.spec.hyper):
        raise MlitbError(ErrorCode.NOT_REPLAYABLE, f"the run used {communication(closure.spec.hyper)}: its updates "
                         "depend on the trainers' error-feedback residuals, the shadow parameters they computed on "
                         "and their inner steps, which the record does not hold; replay recomputes dense gradients "
                         "only. `mlitb closure verify` still recomputes its test error")
    info = closure.manifest.get("replay")
    if closure.spec.hyper.mode == "async":
        raise MlitbError(ErrorCode.NOT_REPLAYABLE, "the closure was trained in asynchronous mode (hyper.mode = "
                         "'async'): its updates depend on the order results arrived in, which is not recorded; "
                         "`verify` still checks its test error")
    if not info or "replay/rounds.json" not in closure.parts:
        raise MlitbError(ErrorCode.NOT_REPLAYABLE, "the closure has no deterministic record: train with "
                         "hyper.deterministic = true to make a run replayable")
    records = json.loads(closure.parts["replay/rounds.json"])
    start_round = int(info["start_round"])
    rounds = [r["round"] for r in records]
    if rounds != list(range(start_round, start_round + len(records))):
        raise MlitbError(ErrorCode.NOT_REPLAYABLE, f"the record's rounds are not consecutive from {start_round}")
    train = load_split(closure, data, "train")
    hyper = closure.spec.hyper
    params = closure.floats("replay/start_weights.bin")
    optimizer = make_optimizer(hyper, params.size)  # the project's server optimizer, from the recorded state
    optimizer.load(closure.floats("replay/start_history.bin"))
    shape = list(train.images.shape[1:])
    report = ReplayReport(rounds=len(records))
    recorded = {m["round"]: m for m in closure.metrics}
    with ClosurePage(closure_files(closure)) as page:
        page.call("init", "/model/model.json", backend)
        for rec in records:
            acc = make_aggregator(hyper, params.size)
            for c in rec["contributions"]:
                ids = np.asarray(c["ids"], dtype=np.int64)
                if ids.size == 0 or ids.min() < 0 or ids.max() >= len(train):
                    raise MlitbError(ErrorCode.DATA_MISMATCH, f"round {rec['round']}: example ids outside the "
                                     f"{len(train)} training examples")
                out = page.call("gradient", b64(params.astype("<f4").tobytes()),
                                b64(train.labels[ids].tobytes()), b64(train.images[ids].tobytes()),
                                shape, hyper.batch_size)
                grad = np.frombuffer(base64.b64decode(out["grad"]), "<f4").astype(np.float32)
                acc.add(grad, int(out["samples"]), float(np.float32(out["lossSum"])))
            if acc.samples > 0 and not rec.get("step_skipped"):
                params = optimizer.step(params, acc.mean(), hyper)
                if params is None:
                    raise MlitbError(ErrorCode.NOT_REPLAYABLE, f"round {rec['round']}: the replayed step is not "
                                     "finite, but the recorded one was taken")
            loss = round(acc.loss_sum / acc.samples, 6) if acc.samples else None
            report.replayed_losses.append(loss)
            report.recorded_losses.append(recorded.get(rec["round"], {}).get("loss"))
    pairs = [(a, b) for a, b in zip(report.replayed_losses, report.recorded_losses) if a is not None or b is not None]
    if any(a is None or b is None for a, b in pairs):
        report.loss_max_abs_diff = float("inf")
    else:
        report.loss_max_abs_diff = max((abs(a - b) for a, b in pairs), default=0.0)
    end_round = start_round + len(records)
    stored = closure.params
    report.weights_max_abs_diff = float(np.max(np.abs(params - stored)))
    report.weights_rel_l2 = float(np.linalg.norm(params - stored) / max(np.linalg.norm(stored), 1e-30))
    report.lines.append(f"replayed rounds {start_round}..{end_round - 1} ({len(records)} rounds, "
                        f"{sum(len(r['contributions']) for r in records)} contributions) with the stored code")
    report.lines.append(f"training loss per round: max |replayed - recorded| = {report.loss_max_abs_diff:.3g} "
                        f"(tolerance {loss_tolerance})")
    if end_round != closure.manifest.get("round"):
        report.lines.append(f"the record ends at round {end_round}, the stored weights are of round "
                            f"{closure.manifest.get('round')}: final weights cannot be compared")
        report.weights_rel_l2 = report.weights_max_abs_diff = float("nan")
        return report
    report.lines.append(f"final weights: max abs diff {report.weights_max_abs_diff:.3g}, relative L2 "
                        f"{report.weights_rel_l2:.3g} (tolerance {weight_tolerance})")
    report.ok = report.loss_max_abs_diff <= loss_tolerance and report.weights_rel_l2 <= weight_tolerance
    report.lines.append("replay matches" if report.ok else "replay does NOT match the record")
    return report
