"""SGD set-up shared by every task: learning-rate scaling and schedule, weight decay masks.

The recipe is NVIDIA's ResNet-50 v1.5 one: SGD with momentum 0.875, learning rate 0.256 per
256 images scaled linearly with the global batch, linear warm-up, then cosine or step decay,
weight decay 1/32768 on convolution and dense weights only.
"""
from mxnet import lr_scheduler

# Parameters that take no weight decay: BatchNorm scale and shift, and every bias. Decaying
# them only pulls normalisation and offsets towards zero without regularising capacity.
NO_DECAY_SUFFIXES = ("_gamma", "_beta", "_bias")


def scaled_learning_rate(lr, global_batch_size, reference_batch=256):
    """The linear scaling rule of Goyal et al.: `lr`, the rate of a global batch of
    `reference_batch` (256 for the classifier and SSD recipes, 16 for Mask R-CNN's), times
    ``global_batch_size / reference_batch``."""
    return lr * global_batch_size / float(reference_batch)


def exclude_from_weight_decay(params):
    """Set `wd_mult = 0` on BatchNorm and bias parameters; return the names excluded.

    Parameters
    ----------
    params : mxnet.gluon.ParameterDict
        The network's `collect_params()`.
    """
    excluded = []
    for name, param in params.items():
        if name.endswith(NO_DECAY_SUFFIXES):
            param.wd_mult = 0.0
            excluded.append(name)
    return excluded


def make_lr_schedule(schedule, base_lr, steps_per_epoch, num_epochs, warmup_epochs=0,
                     decay_epochs=(30, 60, 80), decay_factor=0.1):
    """An epoch-based schedule: `make_step_schedule` with its lengths given in epochs.

    Parameters
    ----------
    steps_per_epoch, num_epochs, warmup_epochs : int or float
        The schedule's length and warm-up in epochs of `steps_per_epoch` updates.
    decay_epochs : sequence of int
        Epochs after which the step schedule decays.
    """
    return make_step_schedule(schedule, base_lr, steps_per_epoch * num_epochs,
                              int(steps_per_epoch * warmup_epochs),
                              [int(e * steps_per_epoch) for e in decay_epochs], decay_factor)


def make_step_schedule(schedule, base_lr, total_steps, warmup_steps=0, decay_steps=(),
                       decay_factor=0.1, warmup_begin_lr=0.0):
    """The learning rate as a function of the optimizer's update count.

    Parameters
    ----------
    schedule : str
        "cosine" (to zero at the last step) or "step" (times `decay_factor` at each of
        `decay_steps`).
    base_lr : float
        Peak learning rate, reached at the end of the warm-up.
    total_steps, warmup_steps : int
        The schedule's length in updates, and the linear warm-up at its start.
    decay_steps : sequence of int
        Updates after which the step schedule decays; those not after warm-up or beyond the
        last step are ignored.
    warmup_begin_lr : float
        The learning rate the warm-up starts from (SSD's recipe starts above zero).

    Returns
    -------
    mxnet.lr_scheduler.LRScheduler
        Called by the optimizer with its update count (1 at the first update). The count
        is saved with the trainer states, so a resumed run continues at the right position
        (`engine.weights.restore_trainer_states` puts the resumed run's schedule back).
    """
    total_steps = max(1, int(total_steps))
    # At least one step after warm-up, so a short run still reaches its peak rate.
    warmup_steps = min(int(warmup_steps), total_steps - 1)
    if schedule == "cosine":
        return lr_scheduler.CosineScheduler(max_update=total_steps, base_lr=base_lr,
                                            final_lr=0.0, warmup_steps=warmup_steps,
                                            warmup_begin_lr=warmup_begin_lr)
    if schedule == "step":
        steps = [s for s in decay_steps if warmup_steps < s < total_steps]
        if not steps:  # MultiFactorScheduler needs one step; this one is never reached
            steps = [total_steps + 1]
        return lr_scheduler.MultiFactorScheduler(step=steps, factor=decay_factor,
                                                 base_lr=base_lr, warmup_steps=warmup_steps,
                                                 warmup_begin_lr=warmup_begin_lr)
    raise ValueError(f"unknown learning-rate schedule {schedule!r}; use 'cosine' or 'step'")


def sgd_params(lr_schedule, momentum, weight_decay, multi_precision):
    """Keyword arguments for MXNet's SGD.

    `multi_precision` keeps float32 master weights and momentum next to float16 parameters, so
    that updates smaller than float16's resolution are not lost.
    """
    return {"learning_rate": lr_schedule.base_lr, "lr_scheduler": lr_schedule,
            "momentum": momentum, "wd": weight_decay, "multi_precision": multi_precision}
