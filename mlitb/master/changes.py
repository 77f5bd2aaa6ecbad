"""What a worker is told on joining (WELCOME), and the data and model changes the runtime applies between
updates: a new upload (fresh balanced allocation) and examples labelled on the fly (MLitB §3.6: the output
layer grows, the new ids go to trainers at once). A mixin of `ProjectRuntime` (mlitb/master/loop.py), kept
apart so the runtime stays one room per job.
"""

from __future__ import annotations

import asyncio

import numpy as np

from mlitb.data import Dataset
from mlitb.master.allocator import Allocator
from mlitb.master.scheduler import Client
from mlitb.protocol import DataInfo, MessageType, Welcome, encode


class DataAndModelChanges:
    def capacity_for(self, dataset: Dataset | None) -> int:
        """Examples one trainer may hold: the id cap, and what fits in its byte budget."""
        if dataset is None:
            return self.settings.trainer_capacity
        per_example = int(np.prod(dataset.shape)) + 1
        return max(1, min(self.settings.trainer_capacity, self.settings.trainer_bytes // per_example))

    def welcome(self, client: Client) -> Welcome:
        """What a worker learns on joining: its id, the model, the period and where the data is."""
        ds, base = self.dataset, f"/api/projects/{self.id}"
        data_base = f"{(self.settings.data_url or '').rstrip('/')}{base}/data"  # the data server, if one is set
        data = None if ds is None else DataInfo(
            version=ds.version, base_version=ds.stable_version, train_url=f"{data_base}/train",
            test_url=f"{data_base}/test" if ds.test else None,
            shape=list(ds.shape), num_classes=len(ds.labels), train_count=len(ds.train),
            test_count=len(ds.test) if ds.test else 0, labels=list(ds.labels))
        h = self.hyper
        return Welcome(client_id=client.id, role=client.role, project_id=self.id, name=self.spec.name,
                       param_count=self.param_count, period_s=h.period_s,
                       batch_size=h.batch_size, model_url=f"{base}/model/model.json", data=data, volunteer=client.volunteer,
                       upload_codec=h.upload_codec, topk_density=h.topk_density,
                       topk_warmup_rounds=h.topk_warmup_rounds, download_codec=h.download_codec,
                       algorithm=h.algorithm, inner_optimizer=h.inner_optimizer, inner_lr=h.inner_lr)

    def new_allocator(self, dataset: Dataset) -> Allocator:
        """The allocator of new data, before any trainer joins it (a cluster's gateway restricts it to its share)."""
        return Allocator(len(dataset.train), self.capacity_for(dataset))

    def attach_data(self, dataset: Dataset) -> None:
        """New data for this project (an upload): allocate it afresh in balanced shares and tell
        every worker where to fetch it (a new WELCOME, then ALLOC for trainers)."""
        self._dataset = dataset
        trainers = [c.id for c in self.trainers()]
        self._allocator = self.new_allocator(dataset)
        for tid in trainers:
            self.allocator.join(tid)
        self._welcome_again()

    def change_model_and_data(self, layers: list[dict], dataset: Dataset) -> int:
        """Take `dataset` (the current data with examples appended) and `layers` (the network, with more
        output units for new classes) from the next update; at once if none is open. Returns that version."""
        self._pending_change = (layers, dataset)
        if self.open_round is None:
            self._apply_change()
            return self.round
        return self.round + 1

    async def settled(self) -> None:
        """Returns once no change is pending (at the latest when the open update closes)."""
        while self._pending_change is not None and not self._stopped:
            await asyncio.sleep(0.05)

    def _apply_change(self) -> None:
        """Between updates: grow the model (ModelState.grow_to), append the new examples to the allocation, and
        WELCOME every worker again (a new parameter count makes it reload the model; the data's base version
        lets it keep the examples it holds)."""
        layers, dataset = self._pending_change
        self._pending_change = None
        self.grow_to(layers)
        if self.dataset is not None and dataset.stable_version != self.dataset.stable_version:
            # the data the examples were appended to was replaced meanwhile (an upload reaching a cluster's project
            # during the round; one process's upload route waits for `settled`): the upload stands
            self._welcome_again()
            return
        added = len(dataset.train) - len(self.dataset.train)
        self._dataset = dataset
        self.allocator.extend(added)
        self._welcome_again()

    def _welcome_again(self) -> None:
        for client in list(self.clients.values()):
            self._send(client, encode(MessageType.WELCOME, project=self.id,
                                      payload=self.welcome(client).model_dump()))
        self._send_allocations()
