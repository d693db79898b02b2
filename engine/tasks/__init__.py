"""What differs between training tasks, behind one small interface.

A task knows how to turn a batch (a dict of NDArrays from any data backend) into its named
training losses, each already normalised the task's way (classification: the mean over the
batch; SSD: divided by the number of positive anchors), and how to evaluate a network on a
loader. The loop sums the losses; the logger logs each. Classification is here; SSD and
Mask R-CNN add their own tasks with their losses, targets and COCO metrics.
"""


class Task:
    """Interface of a training task.

    Attributes
    ----------
    main_metric : str
        The evaluation metric that names the best checkpoint (e.g. "top1").
    display_metrics : tuple of str
        The metrics the epoch's log line shows (e.g. ("top1", "top5")).
    target_metrics : dict
        The --target-* flags the task accepts, by dest, and the metric each is checked
        against (e.g. {"target_top1": "top1"}); `engine.options.TARGET_UNITS` converts each
        flag's unit to the task's percent. (Not ``targets``: SSD's `targets` method makes
        its training targets.)
    """

    main_metric = None
    display_metrics = ()  # the metrics the epoch's log line shows, in order
    target_metrics = {}

    def train_losses(self, net, batch):
        """The named losses of `batch`: {name: scalar NDArray of shape (1,)}, recorded for
        autograd and normalised, so that their sum's gradient is this worker's gradient
        (with --accumulate N, the loop averages N batches' gradients and losses)."""
        raise NotImplementedError

    def evaluate(self, net, loader, dist):
        """Metrics over the whole of `loader` on every worker, combined across workers."""
        raise NotImplementedError

    def summary(self, metrics):
        """One line of the final metrics, for the end of a run."""
        return "  ".join(f"{name} {metrics[name]:.2f}" for name in self.display_metrics)

    def state_dict(self):
        """Per-worker state (random generators) to checkpoint."""
        return {}

    def load_state_dict(self, state):
        pass
