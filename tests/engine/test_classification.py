"""ClassificationTask.evaluate: top-1 and top-5 accuracy on hand-made logits, in one process."""
import mxnet as mx
import numpy as np
import pytest
from mxnet.gluon import nn

from engine.distributed import Distributed
from engine.tasks.classification import ClassificationTask


def _logits(label, rank, num_classes, rng):
    """Logits (distinct values) in which class `label` is the `rank`-th largest (1 = top)."""
    others = [c for c in rng.permutation(num_classes) if c != label]
    order = others[:rank - 1] + [label] + others[rank - 1:]  # classes from best to worst
    logits = np.empty(num_classes, np.float32)
    logits[order] = np.linspace(3.0, -3.0, num_classes)
    assert (logits > logits[label]).sum() == rank - 1
    return logits


def _loader(labels, ranks, num_classes, batch_size):
    """Batches whose data are the logits themselves (the network is the identity)."""
    rng = np.random.default_rng(0)
    logits = np.stack([_logits(y, r, num_classes, rng) for y, r in zip(labels, ranks)])
    return [{"data": mx.nd.array(logits[i:i + batch_size]),
             "label": mx.nd.array(labels[i:i + batch_size], dtype="int32")}
            for i in range(0, len(labels), batch_size)]


def _identity():
    return nn.HybridLambda(lambda F, x: x)


def test_top1_and_top5_on_known_ranks():
    """The right class ranked 1st, 1st, 2nd, 3rd, 5th and 6th: top-1 2/6, top-5 5/6 (5th
    still counts, 6th does not), over two batches, the second one partial."""
    labels = [3, 0, 9, 4, 7, 1]
    ranks = [1, 1, 2, 3, 5, 6]
    task = ClassificationTask(10, mx.cpu())
    metrics = task.evaluate(_identity(), _loader(labels, ranks, 10, batch_size=4),
                            Distributed(None))
    assert metrics["samples"] == 6
    assert metrics["top1"] == pytest.approx(100.0 * 2 / 6)
    assert metrics["top5"] == pytest.approx(100.0 * 5 / 6)


def test_top5_with_fewer_than_five_classes_counts_every_sample():
    """With 4 classes, top-5 accuracy is top-4: every sample is right."""
    labels, ranks = [0, 1, 2, 3], [4, 1, 3, 2]
    task = ClassificationTask(4, mx.cpu())
    metrics = task.evaluate(_identity(), _loader(labels, ranks, 4, batch_size=4),
                            Distributed(None))
    assert metrics == {"top1": pytest.approx(25.0), "top5": pytest.approx(100.0),
                       "samples": 4}


def test_empty_validation_loader_is_an_error():
    task = ClassificationTask(10, mx.cpu())
    with pytest.raises(RuntimeError, match="no samples"):
        task.evaluate(_identity(), [], Distributed(None))
