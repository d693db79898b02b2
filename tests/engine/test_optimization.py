"""Learning-rate scaling and schedules, weight decay masks, loss scaling."""
import math

import mxnet as mx
import numpy as np
import pytest
from mxnet import gluon
from mxnet.gluon import nn

import models
from engine.loss_scaler import LossScaler
from engine.optimization import (exclude_from_weight_decay, make_lr_schedule,
                                 scaled_learning_rate, sgd_params)


def test_linear_scaling_rule():
    assert scaled_learning_rate(0.256, 256) == pytest.approx(0.256)
    assert scaled_learning_rate(0.256, 8 * 208) == pytest.approx(1.664)


def test_cosine_schedule_values():
    # 100 steps/epoch, 10 epochs, 2 warm-up epochs: linear to 1.0 at step 200, cosine to 0.
    lr = make_lr_schedule("cosine", 1.0, 100, 10, warmup_epochs=2)
    assert lr(0) == pytest.approx(0.0)
    assert lr(50) == pytest.approx(0.25)
    assert lr(100) == pytest.approx(0.5)
    assert lr(200) == pytest.approx(1.0)
    assert lr(600) == pytest.approx(0.5)  # half-way through the 800 cosine steps
    assert lr(400) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.25)))
    assert lr(1000) == pytest.approx(0.0, abs=1e-12)


def test_step_schedule_values():
    lr = make_lr_schedule("step", 0.4, 10, 90, warmup_epochs=5, decay_epochs=(30, 60, 80),
                          decay_factor=0.1)
    # The step scheduler keeps state, so query it in increasing update order as SGD does.
    expected = {1: 0.4 / 50, 25: 0.2, 50: 0.4, 300: 0.4, 301: 0.04, 600: 0.04, 601: 0.004,
                801: 0.0004, 900: 0.0004}
    for step, value in expected.items():
        assert lr(step) == pytest.approx(value), step


def test_schedule_without_warmup_and_unknown_name():
    lr = make_lr_schedule("cosine", 0.1, 10, 1, warmup_epochs=0)
    assert lr(1) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 0.1)))
    with pytest.raises(ValueError, match="cosine"):
        make_lr_schedule("linear", 0.1, 10, 1)


def test_short_run_still_reaches_peak_after_clamped_warmup():
    lr = make_lr_schedule("cosine", 1.0, 10, 2, warmup_epochs=5)  # warm-up longer than the run
    assert lr(19) == pytest.approx(1.0)


def test_weight_decay_excludes_batchnorm_and_bias():
    net = models.get_model("resnet18_v1.5", classes=10)
    net.initialize(models.default_initializer())
    net(mx.nd.zeros((1, 3, 32, 32)))
    params = net.collect_params()
    excluded = set(exclude_from_weight_decay(params))
    assert "resnet18_v15_dense0_bias" in excluded
    assert "resnet18_v15_batchnorm0_gamma" in excluded
    assert "resnet18_v15_batchnorm0_beta" in excluded
    assert "resnet18_v15_conv0_weight" not in excluded
    assert "resnet18_v15_dense0_weight" not in excluded

    # One SGD step with zero gradients: only decayed parameters move, by lr * wd * w.
    before = {n: p.data().copy() for n, p in params.items()}
    trainer = gluon.Trainer(params, "sgd", {"learning_rate": 0.5, "wd": 0.1}, kvstore=None)
    with mx.autograd.record():
        zero_loss = 0 * net(mx.nd.ones((2, 3, 32, 32))).sum()
    zero_loss.backward()
    trainer.step(1)
    for name in ("resnet18_v15_batchnorm0_gamma", "resnet18_v15_dense0_bias"):
        np.testing.assert_array_equal(params[name].data().asnumpy(), before[name].asnumpy())
    weight = "resnet18_v15_conv0_weight"
    np.testing.assert_allclose(params[weight].data().asnumpy(),
                               before[weight].asnumpy() * (1 - 0.5 * 0.1), rtol=1e-6)


def test_sgd_params_follow_the_recipe():
    """A Gluon trainer built from `sgd_params` decays convolution and dense weights, with
    momentum, and leaves BatchNorm and biases alone (with zero gradients, only weight decay
    moves anything)."""
    schedule = make_lr_schedule("step", 0.5, 10, 1)  # no decay within the run: lr stays 0.5
    params = sgd_params(schedule, 0.875, 0.01, multi_precision=True)
    assert params["learning_rate"] == 0.5 and params["lr_scheduler"] is schedule
    assert params["multi_precision"] is True

    net = nn.HybridSequential(prefix="net_")
    with net.name_scope():
        net.add(nn.Conv2D(4, 3, in_channels=3), nn.BatchNorm(in_channels=4),
                nn.Dense(2, in_units=4 * 6 * 6))
    net.initialize(mx.init.Uniform(1.0))
    net.collect_params("net_batchnorm0_(gamma|beta)").initialize(mx.init.Uniform(1.0),
                                                                force_reinit=True)
    net.collect_params(".*bias").initialize(mx.init.Uniform(1.0), force_reinit=True)
    weights = ["net_conv0_weight", "net_dense0_weight"]
    untouched = ["net_conv0_bias", "net_batchnorm0_gamma", "net_batchnorm0_beta",
                 "net_dense0_bias"]
    all_params = net.collect_params()
    assert sorted(exclude_from_weight_decay(all_params)) == sorted(untouched)
    trainer = gluon.Trainer(all_params, "sgd", params, kvstore=None)

    def zero_gradient_step():
        with mx.autograd.record():
            zero_loss = 0 * net(mx.nd.ones((2, 3, 8, 8))).sum()
        zero_loss.backward()
        trainer.step(1)

    w0 = {n: all_params[n].data().asnumpy().copy() for n in weights + untouched}
    zero_gradient_step()
    w1 = {n: all_params[n].data().asnumpy().copy() for n in weights}
    zero_gradient_step()
    lr, wd, momentum = 0.5, 0.01, 0.875
    for name in weights:
        # SGD with momentum: v = momentum * v - lr * (grad + wd * w); w += v; grad = 0.
        np.testing.assert_allclose(w1[name], w0[name] * (1 - lr * wd), rtol=1e-6)
        v2 = momentum * (-lr * wd * w0[name]) - lr * wd * w1[name]
        np.testing.assert_allclose(all_params[name].data().asnumpy(), w1[name] + v2,
                                   rtol=1e-5)
    for name in untouched:
        np.testing.assert_array_equal(all_params[name].data().asnumpy(), w0[name])


def _params_with_grad(value):
    p = gluon.Parameter("w", shape=(3,))
    p.initialize()
    p.grad()[:] = value
    return [p]


def test_dynamic_loss_scale_halves_on_overflow_and_grows_after_clean_steps():
    scaler = LossScaler(init_scale=1024, dynamic=True, growth_interval=3)
    assert scaler.grads_finite(_params_with_grad(1.0))
    assert not scaler.grads_finite(_params_with_grad(float("inf")))
    assert not scaler.grads_finite(_params_with_grad(float("nan")))
    scaler.update(False)
    assert scaler.scale == 512 and scaler.skipped_steps == 1
    for _ in range(3):
        scaler.update(True)
    assert scaler.scale == 1024
    restored = LossScaler(dynamic=True)
    restored.load_state_dict(scaler.state_dict())
    assert restored.scale == 1024 and restored.skipped_steps == 1


def test_static_loss_scale_never_changes():
    scaler = LossScaler(init_scale=128.0)
    assert scaler.grads_finite(_params_with_grad(float("inf")))  # static: no check
    scaler.update(False)
    assert scaler.scale == 128.0


def test_a_restored_trainer_follows_the_resumed_runs_schedule(tmp_path):
    """Trainer states pickle the optimizer with its schedule: a run resumed with more steps
    (here a step schedule whose decay lay beyond the first run's end) must take its own
    schedule at the saved update count, not the saved one (which decayed at step 3)."""
    from engine.optimization import make_step_schedule
    from engine.weights import restore_trainer_states

    def trainer(schedule):
        net = nn.Dense(1, in_units=2)
        net.initialize(mx.init.One())
        return net, gluon.Trainer(net.collect_params(), "sgd", sgd_params(schedule, 0.9, 0.0, False))

    net, first = trainer(make_step_schedule("step", 1.0, total_steps=2, decay_steps=[100]))
    for _ in range(2):
        with mx.autograd.record():
            loss = net(mx.nd.ones((1, 2))).sum()
        loss.backward()
        first.step(1)
    first.save_states(str(tmp_path / "t.states"))
    _, resumed = trainer(make_step_schedule("step", 1.0, total_steps=4, decay_steps=[100]))
    restore_trainer_states(resumed, (tmp_path / "t.states").read_bytes(),
                           make_step_schedule("step", 1.0, total_steps=4, decay_steps=[100]))
    assert resumed.optimizer.num_update == 2
    assert resumed.optimizer.lr_scheduler(4) == pytest.approx(1.0)
    _, stale = trainer(make_step_schedule("step", 1.0, total_steps=4, decay_steps=[100]))
    restore_trainer_states(stale, (tmp_path / "t.states").read_bytes())
    assert stale.optimizer.lr_scheduler(4) == pytest.approx(0.1)  # what resuming did before
