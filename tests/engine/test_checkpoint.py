"""Checkpoints: atomic, verified, pruned; broken ones skipped with a message."""
import logging
import os

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon
from mxnet.gluon import nn

from engine.checkpoint import (CheckpointError, export_for_deployment, latest_checkpoint,
                               list_checkpoints, save_checkpoint, verify_checkpoint)
from engine.weights import load_weights, read_trainer_states, restore_trainer_states


def _net_and_trainer(step=True):
    net = nn.HybridSequential(prefix="net_")  # fixed names, as the model zoo's networks have
    with net.name_scope():
        net.add(nn.Dense(4, in_units=3))
    net.initialize()
    net.hybridize()
    # The learning rate halves at every update, so it says where in its schedule a trainer is.
    schedule = mx.lr_scheduler.FactorScheduler(step=1, factor=0.5, base_lr=0.1)
    trainer = gluon.Trainer(net.collect_params(), "sgd",
                            {"learning_rate": 0.1, "momentum": 0.9, "lr_scheduler": schedule},
                            kvstore=None)
    if step:
        _step(net, trainer, mx.nd.ones((2, 3)))  # creates momentum state: a non-trivial file
    return net, trainer


def _step(net, trainer, data):
    with autograd.record():
        loss = (net(data) ** 2).sum()
    loss.backward()
    trainer.step(data.shape[0])


def _save(directory, epochs, keep_last=5):
    net, trainer = _net_and_trainer()
    for epoch in epochs:
        save_checkpoint(str(directory), epoch, net, trainer, {"loop": {"epoch": epoch}},
                        keep_last)
    return net, trainer


def test_save_writes_verified_checkpoint_and_restores_it(tmp_path):
    """Weights and optimizer state (momentum, update count, schedule position) come back into
    a fresh network and trainer, so that training continues exactly where it stopped."""
    net, trainer = _save(tmp_path, [1])
    checkpoint = latest_checkpoint(str(tmp_path))
    assert checkpoint.path.endswith("epoch-0001") and checkpoint.state["epoch"] == 1
    assert sorted(os.listdir(checkpoint.path)) == ["model.params", "state.json",
                                                   "trainer.states"]
    other, other_trainer = _net_and_trainer(step=False)  # a new run: it has never stepped
    load_weights(other, checkpoint.path, mx.cpu())
    for a, b in zip(net.collect_params().values(), other.collect_params().values()):
        np.testing.assert_array_equal(a.data().asnumpy(), b.data().asnumpy())
    restore_trainer_states(other_trainer, read_trainer_states(checkpoint))
    assert other_trainer._optimizer.num_update == trainer._optimizer.num_update == 1
    momentum = trainer._updaters[0].states
    restored = other_trainer._updaters[0].states
    assert sorted(restored) == sorted(momentum)
    for index in momentum:
        assert np.abs(momentum[index].asnumpy()).sum() > 0  # momentum that a restore must carry
        np.testing.assert_array_equal(restored[index].asnumpy(), momentum[index].asnumpy())
    # The next step of the restored trainer is the next step of the one never interrupted:
    # same momentum, and the learning rate of update 2 (0.05), not that of update 1 (0.1).
    data = mx.nd.array([[1.0, -2.0, 0.5], [0.3, 0.7, -1.0]])
    _step(net, trainer, data)
    _step(other, other_trainer, data)
    for a, b in zip(net.collect_params().values(), other.collect_params().values()):
        np.testing.assert_allclose(b.data().asnumpy(), a.data().asnumpy(), rtol=1e-6,
                                   atol=1e-7)


def test_keep_last_prunes_oldest(tmp_path):
    _save(tmp_path, [1, 2, 3, 4], keep_last=2)
    assert [os.path.basename(p) for p in list_checkpoints(str(tmp_path))] == [
        "epoch-0004", "epoch-0003"]


def test_corrupt_newest_falls_back_with_a_warning(tmp_path, caplog):
    _save(tmp_path, [1, 2])
    params = tmp_path / "epoch-0002" / "model.params"
    params.write_bytes(params.read_bytes()[:-10])  # truncated, as by a disk error
    with caplog.at_level(logging.WARNING):
        checkpoint = latest_checkpoint(str(tmp_path))
    assert checkpoint.path.endswith("epoch-0001")
    assert "epoch-0002 is unusable" in caplog.text and "checksum" in caplog.text
    with pytest.raises(CheckpointError, match="checksum"):
        verify_checkpoint(str(tmp_path / "epoch-0002"))


def test_missing_state_file_is_unusable(tmp_path):
    _save(tmp_path, [1])
    os.remove(tmp_path / "epoch-0001" / "state.json")
    assert latest_checkpoint(str(tmp_path)) is None


def test_interrupted_write_leaves_no_checkpoint(tmp_path):
    net, trainer = _net_and_trainer()

    class Interrupted(Exception):
        pass

    def fail(_):
        raise Interrupted()

    trainer.save_states = fail  # dies half-way, after the parameters were written
    with pytest.raises(Interrupted):
        save_checkpoint(str(tmp_path), 1, net, trainer, {})
    assert list_checkpoints(str(tmp_path)) == [] and os.listdir(tmp_path) == []


def test_staging_directories_of_a_killed_run_are_ignored(tmp_path):
    _save(tmp_path, [1])
    os.makedirs(tmp_path / ".epoch-0002-abcd")  # what a SIGKILL during a write leaves
    assert latest_checkpoint(str(tmp_path)).path.endswith("epoch-0001")


def test_export_writes_symbol_and_params_and_prunes(tmp_path):
    net, _ = _net_and_trainer()
    prefix = str(tmp_path / "model")
    for epoch in (1, 2, 3):
        export_for_deployment(net, prefix, epoch, keep_last=2)
    assert sorted(os.listdir(tmp_path)) == ["model-0002.params", "model-0003.params",
                                            "model-symbol.json"]
    loaded = gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"],
                                       prefix + "-0003.params")
    x = mx.nd.random.uniform(shape=(2, 3))
    np.testing.assert_allclose(loaded(x).asnumpy(), net(x).asnumpy(), rtol=1e-6)
    # Exported parameters also load back into the Gluon network.
    fresh, _ = _net_and_trainer()
    load_weights(fresh, prefix + "-0003.params", mx.cpu())
    np.testing.assert_allclose(fresh(x).asnumpy(), net(x).asnumpy(), rtol=1e-6)


class _TwoGraphs(gluon.Block):
    """A network of two exportable parts with Python between them, as Mask R-CNN is."""

    def __init__(self):
        super().__init__()
        with self.name_scope():
            self.first, self.second = nn.Dense(3, in_units=2), nn.Dense(1, in_units=3)

    def forward(self, x):
        return self.second(mx.nd.relu(self.first(x)))

    def export_parts(self):
        return {"first": self.first, "second": self.second}


def test_a_network_of_parts_exports_each_and_keeps_the_newest_epochs(tmp_path):
    net = _TwoGraphs()
    net.initialize()
    net.hybridize()
    x = mx.nd.ones((1, 2))
    expected = net(x).asnumpy()
    prefix = str(tmp_path / "model")
    for epoch in (1, 2, 3):
        export_for_deployment(net, prefix, epoch, keep_last=2)
    assert sorted(os.listdir(tmp_path)) == [
        f"model-{part}-{suffix}" for part in ("first", "second")
        for suffix in ("0002.params", "0003.params", "symbol.json")]
    first = gluon.SymbolBlock.imports(f"{prefix}-first-symbol.json", ["data"],
                                      f"{prefix}-first-0003.params")
    second = gluon.SymbolBlock.imports(f"{prefix}-second-symbol.json", ["data"],
                                       f"{prefix}-second-0003.params")
    np.testing.assert_allclose(second(mx.nd.relu(first(x))).asnumpy(), expected, rtol=1e-6)
