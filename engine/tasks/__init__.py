"""What differs between training tasks, behind one small interface.

A task knows how to turn a batch (a dict of NDArrays from any data backend) into per-sample
training losses, and how to evaluate a network on a loader. Classification is here; SSD and
Mask R-CNN add their own tasks with their losses, targets and COCO metrics.
"""


class Task:
    """Interface of a training task.

    Attributes
    ----------
    main_metric : str
        The evaluation metric that names the best checkpoint (e.g. "top1").
    """

    main_metric = None

    def train_loss(self, net, batch):
        """Per-sample losses of `batch` (an NDArray of shape (batch,)), recorded for autograd."""
        raise NotImplementedError

    def evaluate(self, net, loader, dist):
        """Metrics over the whole of `loader` on every worker, combined across workers."""
        raise NotImplementedError

    def state_dict(self):
        """Per-worker state (random generators) to checkpoint."""
        return {}

    def load_state_dict(self, state):
        pass
