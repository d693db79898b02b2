"""Loss scaling for float16 training.

float16 gradients below about 6e-8 flush to zero. Multiplying the loss by a scale S before the
backward pass lifts them into range; the optimizer divides by S again (through its
`rescale_grad`). A dynamic scaler halves S and skips the update when a gradient overflows, and
doubles it after `growth_interval` clean steps, so S tracks the largest safe value.
"""
from mxnet import nd


class LossScaler:
    """Static loss scale (`dynamic=False`) or dynamic loss scaling.

    Parameters
    ----------
    init_scale : float
        The first scale; 1 means no scaling.
    dynamic : bool
        Adapt the scale to overflows.
    growth_interval : int
        Clean steps before the scale doubles.
    min_scale : float
        The scale never drops below this.
    """

    def __init__(self, init_scale=1.0, dynamic=False, growth_interval=2000, min_scale=1.0):
        self.scale = float(init_scale)
        self.dynamic = dynamic
        self.growth_interval = growth_interval
        self.min_scale = min_scale
        self.clean_steps = 0
        self.skipped_steps = 0

    def grads_finite(self, params):
        """True when every gradient is finite. Call after the gradients are allreduced, so that
        every worker sees the same gradients and takes the same decision."""
        if not self.dynamic:
            return True
        grads = [p.grad() for p in params if p.grad_req != "null"]
        # multi_all_finite reads all arrays in one operator instead of one per parameter.
        finite = nd.multi_all_finite(*grads, num_arrays=len(grads), init_output=True)
        return bool(finite.asscalar())

    def update(self, finite):
        """Adjust the scale after a step whose gradients were `finite` (or not)."""
        if not self.dynamic:
            return
        if finite:
            self.clean_steps += 1
            if self.clean_steps >= self.growth_interval:
                self.scale *= 2.0
                self.clean_steps = 0
        else:
            self.scale = max(self.min_scale, self.scale / 2.0)
            self.clean_steps = 0
            self.skipped_steps += 1

    def can_recover(self):
        """True while a non-finite step can still be answered by lowering the scale."""
        return self.dynamic and self.scale > self.min_scale

    def state_dict(self):
        return {"scale": self.scale, "clean_steps": self.clean_steps,
                "skipped_steps": self.skipped_steps}

    def load_state_dict(self, state):
        self.scale = state["scale"]
        self.clean_steps = state["clean_steps"]
        self.skipped_steps = state["skipped_steps"]
