"""Checkpoints that are either whole or absent.

Each checkpoint is a directory ``checkpoints/epoch-NNNN/`` holding

- ``model.params``: the network's parameters (``save_parameters``),
- ``trainer.states``: optimizer state: momentum, float32 master weights, update count (and so
  the learning-rate schedule's position),
- ``state.json``: epoch, loop and hook states, each worker's loader and task state, the run's
  configuration, and the SHA-256 of the two binary files.

It is written into a hidden temporary directory and renamed into place, so a run killed while
writing leaves no ``epoch-NNNN`` at all; a checkpoint whose files do not match their checksums
(a disk error, a copy cut short) is reported and skipped in favour of the previous one.
"""
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass

from engine.files import file_sha256

log = logging.getLogger(__name__)

_NAME = re.compile(r"^epoch-(\d{4,})$")
PARAMS_FILE, STATES_FILE, STATE_FILE = "model.params", "trainer.states", "state.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message says why."""


@dataclass
class Checkpoint:
    """A checkpoint found on disk and verified."""
    path: str
    state: dict

    @property
    def params_path(self):
        return os.path.join(self.path, PARAMS_FILE)

    @property
    def states_path(self):
        return os.path.join(self.path, STATES_FILE)


def save_checkpoint(directory, epoch, net, trainer, state, keep_last=5):
    """Write checkpoint `epoch` (1-based: epochs completed) atomically; keep the newest
    `keep_last` (0 keeps all). Returns its path."""
    os.makedirs(directory, exist_ok=True)
    _remove_unfinished(directory)
    final = os.path.join(directory, f"epoch-{epoch:04d}")
    staging = tempfile.mkdtemp(prefix=f".epoch-{epoch:04d}-", dir=directory)
    try:
        net.save_parameters(os.path.join(staging, PARAMS_FILE))
        trainer.save_states(os.path.join(staging, STATES_FILE))
        for name in (PARAMS_FILE, STATES_FILE):
            _fsync_path(os.path.join(staging, name))
        state = dict(state, epoch=epoch, sha256={name: file_sha256(os.path.join(staging, name))
                                                 for name in (PARAMS_FILE, STATES_FILE)})
        _write_json(os.path.join(staging, STATE_FILE), state)
        _fsync_path(staging)
        if os.path.exists(final):  # re-running an epoch replaces its checkpoint
            shutil.rmtree(final)
        os.rename(staging, final)
        _fsync_path(directory)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _prune(directory, keep_last)
    return final


def list_checkpoints(directory):
    """Checkpoint directories under `directory`, newest (highest epoch) first."""
    if not os.path.isdir(directory):
        return []
    found = [(int(m.group(1)), os.path.join(directory, name))
             for name in os.listdir(directory) if (m := _NAME.match(name))]
    return [path for _, path in sorted(found, reverse=True)]


def verify_checkpoint(path):
    """Read and check one checkpoint directory.

    Raises
    ------
    CheckpointError
        If a file is missing or its checksum does not match.
    """
    try:
        with open(os.path.join(path, STATE_FILE)) as f:
            state = json.load(f)
        for name, expected in state["sha256"].items():
            if file_sha256(os.path.join(path, name)) != expected:
                raise CheckpointError(f"{name} does not match its checksum")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{type(error).__name__}: {error}") from error
    return Checkpoint(path, state)


def latest_checkpoint(directory):
    """The newest checkpoint under `directory` that verifies, or None.

    Broken ones are skipped with a warning naming them and the reason.
    """
    for path in list_checkpoints(directory):
        try:
            return verify_checkpoint(path)
        except CheckpointError as error:
            log.warning("checkpoint %s is unusable (%s); falling back to the previous one",
                        path, error)
    return None


def export_for_deployment(net, prefix, epoch, keep_last=5):
    """Write `prefix`-symbol.json and `prefix`-NNNN.params (``net.export``), atomically, and
    keep the newest `keep_last` .params files (0 keeps all).

    A network that is not one graph (Mask R-CNN: Python glue with data-dependent shapes
    between its parts) lists the parts MXNet can export in ``net.export_parts()``; each is
    written as `prefix`-PART-symbol.json and `prefix`-PART-NNNN.params. The network must be
    hybridized and have run forward once.
    """
    directory = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(directory, exist_ok=True)
    parts = net.export_parts() if hasattr(net, "export_parts") else {"": net}
    staging = tempfile.mkdtemp(prefix=".export-", dir=directory)
    try:
        for part, block in parts.items():
            target = f"{prefix}-{part}" if part else prefix
            staged_prefix = os.path.join(staging, part or "model")
            block.export(staged_prefix, epoch)
            os.replace(f"{staged_prefix}-symbol.json", f"{target}-symbol.json")
            os.replace(f"{staged_prefix}-{epoch:04d}.params", f"{target}-{epoch:04d}.params")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if keep_last > 0:
        pattern = re.compile(re.escape(os.path.basename(prefix)) + r"(-[a-z_]+)?-(\d{4,})\.params$")
        exported = sorted((int(m.group(2)), name) for name in os.listdir(directory)
                          if (m := pattern.match(name)))
        epochs = sorted({epoch for epoch, _ in exported})
        for epoch_done, name in exported:
            if epoch_done in epochs[:-keep_last]:
                os.remove(os.path.join(directory, name))


def _remove_unfinished(directory):
    # Staging directories of checkpoints whose writing was cut short (a killed run); only one
    # process writes checkpoints, so none is in progress now.
    for name in os.listdir(directory):
        if name.startswith(".epoch-"):
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def _prune(directory, keep_last):
    if keep_last > 0:
        for path in list_checkpoints(directory)[keep_last:]:
            shutil.rmtree(path, ignore_errors=True)



def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def _fsync_path(path):
    # Make a file's data, or a directory's entries (new files, a rename), durable now, so that
    # a crash of the machine cannot leave a renamed checkpoint with missing contents.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
