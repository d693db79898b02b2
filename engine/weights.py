"""Loading network weights and optimizer state from checkpoints and exported models."""
import os
import tempfile

import mxnet as mx

from engine.checkpoint import PARAMS_FILE, STATE_FILE, CheckpointError


def weights_file(path):
    """The parameter file behind `path`: a checkpoint directory, its state.json, or a .params
    file (from a checkpoint or from ``export``)."""
    if os.path.isdir(path):
        path = os.path.join(path, PARAMS_FILE)
    elif os.path.basename(path) == STATE_FILE:
        path = os.path.join(os.path.dirname(path), PARAMS_FILE)
    if not os.path.isfile(path):
        raise CheckpointError(f"no weights at {path}: pass a checkpoint directory "
                              f"(WORKSPACE/checkpoints/epoch-NNNN) or a .params file")
    return path


def load_weights(net, path, ctx):
    """Load parameters into `net` from a checkpoint's ``model.params`` or an exported
    ``PREFIX-NNNN.params``, casting to the network's dtypes.

    Raises
    ------
    CheckpointError
        If the file is unreadable or its parameters do not fit the network.
    """
    path = weights_file(path)
    try:
        saved = mx.nd.load(path)
    except mx.base.MXNetError as error:
        raise CheckpointError(f"{path} is not a readable MXNet parameter file") from error
    try:
        if any(key.startswith(("arg:", "aux:")) for key in saved):
            _load_exported(net, saved, ctx)
        else:
            net.load_parameters(path, ctx=ctx, cast_dtype=True, dtype_source="current")
    except (AssertionError, KeyError, ValueError, mx.base.MXNetError) as error:
        raise CheckpointError(f"{path} does not fit this network (wrong --arch, "
                              f"--num-classes or --layout?): {error}") from error


def _load_exported(net, saved, ctx):
    # ``export`` names parameters by their full name, prefixed with arg: or aux:.
    by_name = {key.split(":", 1)[1]: value for key, value in saved.items()}
    params = net.collect_params()
    missing = sorted(set(params.keys()) - set(by_name))
    if missing:
        raise KeyError(f"{len(missing)} parameters missing, e.g. {missing[:3]}")
    for name, param in params.items():
        param.set_data(by_name[name].astype(param.dtype).as_in_context(ctx))


def read_trainer_states(checkpoint):
    """The serialized optimizer state of a checkpoint, as bytes."""
    with open(checkpoint.states_path, "rb") as f:
        return f.read()


def restore_trainer_states(trainer, states, lr_schedule=None):
    """Load serialized optimizer state into a (possibly distributed) Gluon trainer.

    The saved optimizer carries the learning-rate schedule of the run that saved it; with
    `lr_schedule`, this run's schedule replaces it (a resumed run may be given more steps,
    another decay), continuing at the saved update count."""
    # Gluon only loads states from a file; the bytes came from rank 0 by broadcast.
    with tempfile.NamedTemporaryFile(suffix=".states") as f:
        f.write(states)
        f.flush()
        trainer.load_states(f.name)
    if lr_schedule is not None:
        trainer.optimizer.lr_scheduler = lr_schedule
