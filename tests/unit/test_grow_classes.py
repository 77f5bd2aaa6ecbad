"""Adding a class: the output layer, its optimizer state, the data and the allocation grow; nothing else moves."""

import numpy as np
import pytest

from mlitb.data import Dataset, Split
from mlitb.data.examples import LabelledExample, clean_label, with_examples
from mlitb.errors import ErrorCode, MlitbError
from mlitb.master.allocator import UNALLOCATED, Allocator
from mlitb.model import PAPER_NETWORK, glorot_init, parse_network, split_weights
from mlitb.model.grow import MAX_CLASSES, fit_checkpoint, grow_arrays, output_layer_index, with_more_classes


def test_a_new_class_adds_one_kernel_column_and_one_bias_and_keeps_every_other_weight():
    old = parse_network(PAPER_NETWORK)
    new = parse_network(with_more_classes(PAPER_NETWORK, 1))
    assert new.num_classes == 11 and new.param_count == old.param_count + 3136 + 1
    params = glorot_init(old, 3)
    history = np.abs(params) + 1
    grown, grown_history = grow_arrays(old, new, params, history)
    before, after = split_weights(old, params), split_weights(new, grown)
    assert np.array_equal(after["conv2d_1/kernel"], before["conv2d_1/kernel"])
    assert np.array_equal(after["dense_4/kernel"][:, :10], before["dense_4/kernel"])
    assert not after["dense_4/kernel"][:, 10].any() and after["dense_4/bias"][10] == 0
    hist = split_weights(new, grown_history)
    assert np.array_equal(hist["dense_4/kernel"][:, :10], split_weights(old, history)["dense_4/kernel"])
    assert not hist["dense_4/kernel"][:, 10].any()


def test_the_output_layer_may_be_followed_by_activations_and_dropout_only():
    layers = [{"type": "input", "shape": [4]}, {"type": "dense", "units": 3}, {"type": "dropout"}, {"type": "softmax"}]
    assert output_layer_index(layers) == 1
    assert with_more_classes(layers, 2)[1]["units"] == 5
    conv_out = [{"type": "input", "shape": [4, 4, 1]}, {"type": "conv2d", "filters": 3, "kernel": 4, "padding": "valid"},
                {"type": "flatten"}, {"type": "softmax"}]
    parse_network(conv_out)  # a valid classifier, but its classes are not the units of a dense layer
    with pytest.raises(MlitbError) as exc:
        with_more_classes(conv_out, 1)
    assert exc.value.code is ErrorCode.CANNOT_ADD_CLASS
    big = [{"type": "input", "shape": [4]}, {"type": "dense", "units": MAX_CLASSES, "activation": "softmax"}]
    with pytest.raises(MlitbError, match="at most 256"):
        with_more_classes(big, 1)


def test_a_checkpoint_saved_before_classes_were_added_is_grown_to_the_stored_network():
    layers = with_more_classes(PAPER_NETWORK, 2)
    old, new = parse_network(PAPER_NETWORK), parse_network(layers)
    params = glorot_init(old, 1)
    fitted, history = fit_checkpoint(layers, new, params, np.ones_like(params))
    assert fitted.size == new.param_count and history.size == new.param_count
    assert np.array_equal(split_weights(new, fitted)["dense_4/kernel"][:, :10], split_weights(old, params)["dense_4/kernel"])
    same = glorot_init(new, 1)
    assert fit_checkpoint(layers, new, same, same)[0] is same  # already fits: as is
    with pytest.raises(ValueError):
        fit_checkpoint(layers, new, params[:-5], params[:-5])  # not a smaller output layer


def test_examples_are_appended_so_every_id_keeps_its_content_and_new_labels_become_classes():
    base = Dataset("d", ("a", "b"), Split(np.zeros((4, 2, 2, 1), np.uint8), np.array([0, 1, 0, 1], np.uint8)), None)
    one = with_examples(base, [LabelledExample("c", np.full((2, 2, 1), 7, np.uint8))])
    two = with_examples(one, [LabelledExample("a", np.full((2, 2, 1), 9, np.uint8))])
    assert two.labels == ("a", "b", "c") and two.train.labels.tolist() == [0, 1, 0, 1, 2, 0]
    assert two.base_version == one.base_version == base.version != two.version
    assert (two.appended, two.stable_version) == (2, base.version)
    with pytest.raises(ValueError):
        with_examples(base, [LabelledExample("a", np.zeros((3, 3, 1), np.uint8))])


@pytest.mark.parametrize("raw", ["", "   ", "a/b", "tab\there", "x" * 65])
def test_labels_must_be_short_printable_and_without_slashes(raw):
    with pytest.raises(MlitbError) as exc:
        clean_label(raw)
    assert exc.value.code is ErrorCode.INVALID_REQUEST


def test_labels_are_trimmed():
    assert clean_label("  cat ") == "cat"


def test_new_ids_go_to_the_least_loaded_trainer_even_when_every_trainer_is_full():
    alloc = Allocator(10, capacity=4)
    for t in (1, 2):
        alloc.join(t)
    alloc.take_changed()
    assert alloc.counts() == {1: 4, 2: 4}
    new = alloc.extend(2)
    assert new.tolist() == [10, 11]
    assert set(alloc.owner[10:].tolist()) == {1, 2}  # each new example is held by a trainer
    assert alloc.counts() == {1: 4, 2: 4}  # at capacity: an old id was given back for it
    assert alloc.take_changed() == {1, 2}
    empty = Allocator(3, capacity=4)
    empty.extend(1)
    assert empty.owner.tolist() == [UNALLOCATED] * 4
