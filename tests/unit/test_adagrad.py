"""AdaGrad with L1/L2 decay, checked against values computed by hand."""

import numpy as np
import pytest

from mlitb.training import adagrad_step


def test_first_adagrad_step_moves_each_weight_by_the_learning_rate_against_the_gradient_sign():
    w = np.array([1.0, -2.0, 0.5], np.float32)
    h = np.zeros(3, np.float32)
    adagrad_step(w, h, np.array([0.5, -4.0, 0.0], np.float32), learning_rate=0.1, epsilon=1e-8)
    # g/sqrt(g^2) = sign(g): w - 0.1*sign(g); zero gradient leaves the weight alone
    np.testing.assert_allclose(w, [0.9, -1.9, 0.5], rtol=1e-6)
    np.testing.assert_allclose(h, [0.25, 16.0, 0.0])


def test_second_step_is_scaled_by_the_accumulated_history():
    w = np.array([0.0], np.float32)
    h = np.zeros(1, np.float32)
    adagrad_step(w, h, np.array([3.0], np.float32), learning_rate=1.0, epsilon=0.0)
    adagrad_step(w, h, np.array([4.0], np.float32), learning_rate=1.0, epsilon=0.0)
    # step 1: -3/3 = -1; step 2: -4/sqrt(9+16) = -0.8
    np.testing.assert_allclose(w, [-1.8], rtol=1e-6)


def test_l2_and_l1_decay_are_added_to_the_gradient():
    w = np.array([2.0, -2.0], np.float32)
    h = np.zeros(2, np.float32)
    adagrad_step(w, h, np.zeros(2, np.float32), learning_rate=0.5, epsilon=0.0, l1=0.1, l2=0.25)
    # g = 0.25*w + 0.1*sign(w) = [0.6, -0.6]; step = 0.5 * sign(g)
    np.testing.assert_allclose(h, [0.36, 0.36], rtol=1e-6)
    np.testing.assert_allclose(w, [1.5, -1.5], rtol=1e-6)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError):
        adagrad_step(np.zeros(2, np.float32), np.zeros(3, np.float32), np.zeros(2, np.float32), learning_rate=0.1)


def test_the_adagrad_optimizer_object_takes_the_same_step_as_the_pure_function_on_new_arrays():
    from types import SimpleNamespace

    from mlitb.training.optimizers import AdaGrad

    hyper = SimpleNamespace(learning_rate=0.1, epsilon=1e-8, l1=0.01, l2=0.02)
    params = np.array([0.5, -1.0, 2.0], np.float32)
    grad = np.array([0.3, 0.0, -4.0], np.float32)
    opt = AdaGrad(3)
    new = opt.step(params, grad, hyper)
    expected_params, expected_history = params.copy(), np.zeros(3, np.float32)
    adagrad_step(expected_params, expected_history, grad, learning_rate=0.1, epsilon=1e-8, l1=0.01, l2=0.02)
    np.testing.assert_array_equal(new, expected_params)
    np.testing.assert_array_equal(opt.state(), expected_history)
    assert new is not params and params[0] == np.float32(0.5)  # the input is never written


def test_the_adagrad_optimizer_refuses_a_non_finite_step_and_keeps_its_state():
    from types import SimpleNamespace

    from mlitb.training.optimizers import AdaGrad

    hyper = SimpleNamespace(learning_rate=0.1, epsilon=1e-8, l1=0.0, l2=0.0)
    opt = AdaGrad(2)
    opt.load(np.array([1.0, 2.0], np.float32))
    assert opt.step(np.ones(2, np.float32), np.array([3e38, 0], np.float32), hyper) is None
    np.testing.assert_array_equal(opt.state(), [1.0, 2.0])
