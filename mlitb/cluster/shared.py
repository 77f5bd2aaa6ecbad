"""Changes made at one gateway that every gateway must see: loaded weights, examples labelled on the fly (a new
class grows the network) and uploaded data.

A gateway checks the request exactly as one process does (the same routes), applies it to its own runtime, and
sends it to the project actor (`SharedChanges`, a mixin of `ProjectCore`), which checks it again as hostile
input, applies it to the project's runtime (the one that takes the steps and checkpoints), bumps the project's
`generation` and stores it (the actor: the checkpoint, the example row, the data files). Every gateway learns the
generation with its next round (`next_round`) and, when it is behind, takes the project's network, data and
parameters (`state`, then `adopt`) before it sends its clients the round: a new WELCOME for a new network
or data, exactly as one process tells its clients. Two gateways changing the project at once end with the
project's order of the changes. Which ids each gateway's trainers may hold is the project's decision too
(mlitb/cluster/shares.py): appended examples and a new upload are placed in the gateways' shares with the next
round.
"""

from __future__ import annotations

import numpy as np

from mlitb.data import Dataset
from mlitb.data.examples import LabelledExample, clean_label
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.loop import ProjectRuntime
from mlitb.server.examples import MAX_EXAMPLES, grown_by


class SharedChanges:
    """ProjectCore's side (`self.runtime`, `self.generation`, `self.gateways`, `self.live()`, `self._open`)."""

    def state(self) -> dict:
        """What a gateway takes when it is behind: the network, data and parameters in force, and their generation."""
        rt = self.runtime
        return {"layers": rt.spec.network, "dataset": rt.dataset, "params": rt.params, "round": rt.round,
                "generation": self.generation}

    def load_weights(self, params) -> None:
        """Weights loaded at a gateway (PUT .../weights.bin): refused while any gateway has trainers or a round is
        open (TRAINING_RUNNING), as one process refuses them while it has trainers."""
        rt = self.runtime
        if not isinstance(params, np.ndarray) or params.dtype != np.float32 or params.shape != (rt.param_count,):
            raise MlitbError(ErrorCode.WRONG_LENGTH, f"weights are {rt.param_count} float32 values")
        if not np.isfinite(params).all():
            raise MlitbError(ErrorCode.NON_FINITE, "the weights hold NaN or infinite values")
        busy = [g for g in self.live() if self.gateways[g].get("clients")]
        if busy or self._open is not None:
            raise MlitbError(ErrorCode.TRAINING_RUNNING, f"gateways {', '.join(busy) or '(a round is open)'} have "
                             "clients: stop them before replacing the weights")
        rt.load_weights(params)
        self.generation += 1

    def add_example(self, label, image) -> tuple[dict, Dataset]:
        """A picture labelled at a gateway (POST .../examples): the project's network and data grow as in one process
        (from its next round); returns the spec to store with the example, and the grown data."""
        rt = self.runtime
        label = clean_label(label) if isinstance(label, str) else None
        layers, dataset = rt.latest_model_and_data()
        if label is None or dataset is None or not isinstance(image, np.ndarray) or image.dtype != np.uint8 \
                or image.shape != dataset.shape:
            raise MlitbError(ErrorCode.BAD_IMAGE, "an example is a label and a uint8 picture of the data's shape")
        if dataset.appended >= MAX_EXAMPLES:
            raise MlitbError(ErrorCode.CANNOT_ADD_CLASS, f"{dataset.appended} examples were added already")
        layers, grown, _ = grown_by(layers, dataset, LabelledExample(label, image))
        spec = rt.spec.model_copy(update={"network": layers})
        spec.build_network()  # valid before anything is applied
        if self._open is None:
            rt.change_model_and_data(layers, grown)
            self.generation += 1
        else:  # the open round's partials are of the old network: the change waits for the next round to begin,
            rt._pending_change = (layers, grown)  # which counts it (`generation`) once `state` has it
        return spec.model_dump(), grown

    def attach_data(self, dataset) -> None:
        """Data uploaded at a gateway (PUT .../data/{split}, already decoded and checked there): checked again against
        the network, then in force from the next round."""
        rt = self.runtime
        if not isinstance(dataset, Dataset) or tuple(dataset.shape) != tuple(rt.network.input_shape) \
                or len(dataset.labels) != rt.network.num_classes:
            raise MlitbError(ErrorCode.INVALID_NETWORK, "uploaded data must fit the project's network")
        rt.attach_data(dataset)
        self.generation += 1


def adopt(rt: ProjectRuntime, described: dict) -> None:
    """A gateway's runtime takes the project's network, data and parameters (`state`): a grown network and
    appended examples as one process takes them between rounds; other data as a new upload."""
    layers, data = described["layers"], described["dataset"]
    mine = rt.dataset
    if layers != rt.spec.network or (data is not None and (mine is None or data.version != mine.version)):
        if data is not None and mine is not None and data.stable_version == mine.stable_version \
                and len(data.train) >= len(mine.train):
            ProjectRuntime.change_model_and_data(rt, layers, data)  # between rounds: at once
        else:
            rt.grow_to(layers)
            if data is not None:
                ProjectRuntime.attach_data(rt, data)
    params = np.asarray(described["params"], np.float32)
    if params.shape == rt.params.shape:  # the next round's `follow` brings the parameters of that round anyway
        ProjectRuntime.replace_params(rt, params)


def last_example(dataset: Dataset) -> LabelledExample:
    """The example `with_examples` appended last (what the examples route added at a gateway)."""
    return LabelledExample(dataset.labels[int(dataset.train.labels[-1])], dataset.train.images[-1].copy())
