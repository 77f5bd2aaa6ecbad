"""Outer Nesterov step of local-SGD rounds: values by hand, FedAvg as its special case."""

import numpy as np

from mlitb.training.nesterov import nesterov_step


def test_without_momentum_and_rate_one_the_step_is_parameter_averaging():
    w, v = np.array([1.0, 2.0], np.float32), np.zeros(2, np.float32)
    nesterov_step(w, v, np.array([0.5, -1.0], np.float32), learning_rate=1.0, momentum=0.0)
    assert w.tolist() == [0.5, 3.0]


def test_two_steps_with_momentum_match_values_computed_by_hand():
    w, v = np.array([0.0], np.float32), np.zeros(1, np.float32)
    nesterov_step(w, v, np.array([1.0], np.float32), learning_rate=0.5, momentum=0.5)
    # v = 1, w = -0.5 * (1 + 0.5) = -0.75
    assert v.tolist() == [1.0] and w.tolist() == [-0.75]
    nesterov_step(w, v, np.array([1.0], np.float32), learning_rate=0.5, momentum=0.5)
    # v = 1.5, w = -0.75 - 0.5 * (1 + 0.75) = -1.625
    assert v.tolist() == [1.5] and w.tolist() == [-1.625]
