"""Image classification: smoothed cross-entropy, optional mixup, top-1/top-5 accuracy."""
import numpy as np
from mxnet import gluon, nd

from engine.tasks import Task


class ClassificationTask(Task):
    """Single-label classification.

    Parameters
    ----------
    num_classes : int
    ctx : mxnet.Context
        The worker's device; batches are moved there (a no-op when already there).
    label_smoothing : float
        Mass spread uniformly over all classes (0.1 in the recipe).
    mixup_alpha : float
        Beta(alpha, alpha) mixing of image pairs and their labels; 0 disables mixup.
    seed : int
        Seed of the mixup generator; give each worker a different one.
    """

    main_metric = "top1"
    display_metrics = ("top1", "top5")
    target_metrics = {"target_top1": "top1"}

    def __init__(self, num_classes, ctx, label_smoothing=0.1, mixup_alpha=0.0, seed=0):
        self.num_classes = num_classes
        self.ctx = ctx
        self.label_smoothing = label_smoothing
        self.mixup_alpha = mixup_alpha
        self.rng = np.random.default_rng(seed)
        self.loss_fn = gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)

    def soft_targets(self, labels):
        """One-hot float32 targets with label smoothing."""
        on = 1.0 - self.label_smoothing + self.label_smoothing / self.num_classes
        off = self.label_smoothing / self.num_classes
        return nd.one_hot(labels, self.num_classes, on_value=on, off_value=off)

    def train_losses(self, net, batch):
        """{"xent": the mean smoothed cross-entropy of the batch}."""
        data = batch["data"].as_in_context(self.ctx)
        targets = self.soft_targets(batch["label"].as_in_context(self.ctx))
        if self.mixup_alpha > 0:
            data, targets = self._mixup(data, targets)
        return {"xent": self.loss_fn(net(data), targets).mean()}

    def _mixup(self, data, targets):
        # Each sample is mixed with its mirror in the batch (Zhang et al., 2018).
        lam = float(self.rng.beta(self.mixup_alpha, self.mixup_alpha))
        mixed_data = lam * data + (1 - lam) * data[::-1]
        mixed_targets = lam * targets + (1 - lam) * targets[::-1]
        return mixed_data, mixed_targets

    def evaluate(self, net, loader, dist):
        """Top-1 and top-5 accuracy (percent) and the sample count, over all workers."""
        sums = nd.zeros(3, ctx=self.ctx, dtype="float64")
        for batch in loader:
            logits = net(batch["data"].as_in_context(self.ctx))
            labels = batch["label"].as_in_context(self.ctx).astype("float32")
            sums += self._batch_sums(logits, labels)
        correct1, correct5, count = dist.sum(sums.asnumpy(), "eval.top1_top5_count")
        if count == 0:
            raise RuntimeError("the validation loader produced no samples")
        return {"top1": 100.0 * correct1 / count, "top5": 100.0 * correct5 / count,
                "samples": int(count)}

    def _batch_sums(self, logits, labels):
        k = min(5, self.num_classes)
        top1 = nd.argmax(logits, axis=1) == labels
        topk = nd.topk(logits, axis=1, k=k) == labels.expand_dims(1)
        count = nd.array([labels.shape[0]], ctx=self.ctx)
        return nd.concat(top1.sum(), topk.sum(), count, dim=0).astype("float64")

    def summary(self, metrics):
        return (f"top-1 {metrics['top1']:.2f}%  top-5 {metrics['top5']:.2f}%  "
                f"({metrics['samples']} images)")

    def state_dict(self):
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state):
        if "rng" in state:
            self.rng.bit_generator.state = state["rng"]
