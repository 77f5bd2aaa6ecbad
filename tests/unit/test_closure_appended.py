"""A closure of a project that learnt a class on the fly carries the added examples: its training split
is the built-in data plus those, and it is checked against the data manifest like any other."""

import numpy as np
import pytest

from mlitb.closure import build_closure, snapshot
from mlitb.closure.format import APPENDED_PART, read_closure
from mlitb.closure.verify import load_split
from mlitb.config import Settings
from mlitb.data import load_mnist
from mlitb.data.examples import LabelledExample, with_examples
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.loop import ProjectRuntime
from mlitb.master.project import ProjectSpec
from mlitb.model import PAPER_NETWORK
from mlitb.model.grow import with_more_classes


@pytest.fixture(scope="module")
def grown():
    spec = ProjectSpec(name="grown", dataset="mnist", network=PAPER_NETWORK)
    rt = ProjectRuntime(1, spec, spec.build_network(), load_mnist(), Settings())
    data = with_examples(rt.dataset, [LabelledExample("star", np.full((28, 28, 1), 255, np.uint8)),
                                      LabelledExample("3", np.zeros((28, 28, 1), np.uint8))])
    rt.change_model_and_data(with_more_classes(rt.spec.network, 1), data)
    return rt, read_closure(build_closure(snapshot(rt)))


def test_the_closure_stores_the_added_examples_and_names_the_new_labels(grown):
    rt, closure = grown
    assert closure.data["appended"] == {"count": 2, "part": APPENDED_PART, "new_labels": ["star"]}
    assert closure.data["labels"][-1] == "star" and closure.network.num_classes == 11
    raw = closure.parts[APPENDED_PART]
    assert list(raw[:2]) == [10, 3] and len(raw) == 2 * (1 + 784)


def test_the_training_split_is_rebuilt_from_the_built_in_data_and_the_closure(grown):
    rt, closure = grown
    train = load_split(closure, None, "train")
    assert len(train) == 60_002 and np.array_equal(train.labels, rt.dataset.train.labels)
    assert np.array_equal(train.images[-2:], rt.dataset.train.images[-2:])
    closure.parts[APPENDED_PART] = closure.parts[APPENDED_PART][:-1]
    with pytest.raises(MlitbError) as exc:
        load_split(closure, None, "train")
    assert exc.value.code is ErrorCode.CLOSURE_INVALID
