"""Torch engine edges: networks it refuses (named), inverted dropout as TF.js's, examples kept across allocations."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from mlitb.errors import MlitbError
from mlitb.model import PAPER_NETWORK, model_json, parse_network
from mlitb.workers.native.data import fill, id_runs
from mlitb.workers.native.engine import TorchEngine, pick_device
from mlitb.workers.native.network import network_from_model_json, spec_from_model_json


def test_the_model_json_of_every_allowed_layer_reads_back_to_the_same_spec():
    spec = [{"type": "input", "shape": [9, 9, 2]},
            {"type": "conv2d", "filters": 3, "kernel": 3, "stride": 2, "padding": "valid", "activation": "tanh"},
            {"type": "maxpool2d", "size": 2, "stride": 1}, {"type": "relu"}, {"type": "tanh"}, {"type": "sigmoid"},
            {"type": "flatten"}, {"type": "dropout", "rate": 0.25},
            {"type": "dense", "units": 4, "activation": "linear"}, {"type": "softmax"}]
    net = parse_network(spec)
    assert network_from_model_json(model_json(net, "x")).to_spec() == net.to_spec()


def test_a_layer_the_engine_cannot_build_is_refused_by_index_class_and_name():
    doc = model_json(parse_network(PAPER_NETWORK), "x")
    doc["modelTopology"]["config"]["layers"].insert(1, {"class_name": "BatchNormalization", "config": {"name": "bn_2"}})
    with pytest.raises(MlitbError, match=r"cannot build layer 2 \(BatchNormalization 'bn_2'\)"):
        spec_from_model_json(doc)
    doc = model_json(parse_network(PAPER_NETWORK), "x")
    doc["modelTopology"]["config"]["layers"][0]["config"]["dilation_rate"] = [2, 2]
    with pytest.raises(MlitbError, match="layer 1 .Conv2D 'conv2d_1'.*dilation"):
        spec_from_model_json(doc)


def test_a_weight_manifest_that_disagrees_with_the_layers_is_refused():
    doc = model_json(parse_network(PAPER_NETWORK), "x")
    doc["weightsManifest"][0]["weights"][0]["shape"] = [3, 3, 1, 16]
    with pytest.raises(MlitbError, match="manifest"):
        network_from_model_json(doc)


def test_dropout_in_training_is_inverted_dropout_at_its_rate_as_in_tfjs_layers():
    net = parse_network([{"type": "input", "shape": [50, 40, 1]}, {"type": "flatten"},
                         {"type": "dropout", "rate": 0.3}, {"type": "dense", "units": 2, "activation": "softmax"}])
    engine = TorchEngine(net, "cpu")
    drop = engine.model.body[1]
    drop.train()
    x = torch.ones(10, 2000)
    y = drop(x)
    kept = y != 0
    assert abs(1 - kept.float().mean().item() - 0.3) < 0.02
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))
    drop.eval()
    assert torch.equal(drop(x), x)


def test_wrong_sized_parameters_are_refused_with_wrong_length():
    engine = TorchEngine(parse_network(PAPER_NETWORK), "cpu")
    with pytest.raises(MlitbError, match="WRONG_LENGTH"):
        engine.set_params(np.zeros(5, np.float32))


def test_cuda_is_refused_clearly_where_there_is_none_and_auto_falls_back_to_cpu():
    if torch.cuda.is_available():
        assert pick_device("cuda").type == "cuda"
    else:
        with pytest.raises(RuntimeError, match="no usable CUDA device"):
            pick_device("cuda")
        assert pick_device("auto").type == "cpu"


def test_id_runs_coalesce_consecutive_ids_up_to_a_cap():
    assert id_runs(np.array([1, 2, 3, 7, 8, 10], np.uint32)) == [(1, 3), (7, 2), (10, 1)]
    assert id_runs(np.arange(5, dtype=np.uint32), 2) == [(0, 2), (2, 2), (4, 1)]


class _Fetcher:
    def __init__(self):
        self.asked: list[tuple[int, int]] = []

    async def fetch(self, url, start, count, shape, version):
        self.asked.append((start, count))
        ids = np.arange(start, start + count)
        return (ids % 7).astype(np.uint8), np.repeat(ids.astype(np.uint8), int(np.prod(shape))).reshape(count, *shape), False


async def _last(gen):
    out = None
    async for x in gen:
        out = x
    return out


def test_a_new_allocation_keeps_the_examples_still_owned_and_fetches_only_the_new_ones():
    f = _Fetcher()
    first, _, _ = asyncio.run(_last(fill(f, None, np.arange(0, 10, dtype=np.uint32), "b1", "v1", "/t", (2, 2, 1))))
    assert f.asked == [(0, 10)]
    f.asked.clear()
    held, kept, _ = asyncio.run(_last(fill(f, first, np.array([5, 6, 7, 8, 9, 20, 21], np.uint32), "b1", "v2", "/t",
                                           (2, 2, 1))))
    assert f.asked == [(20, 2)] and kept == 5
    assert sorted(held.ids.tolist()) == [5, 6, 7, 8, 9, 20, 21]
    for i, label, img in zip(held.ids, held.labels, held.images):  # every id keeps its own content
        assert label == i % 7 and (img == (i % 256)).all()
    f.asked.clear()
    asyncio.run(_last(fill(f, held, np.array([5, 6], np.uint32), "b2", "v3", "/t", (2, 2, 1))))
    assert f.asked == [(5, 2)]  # a new base version: nothing held is trusted
