"""Writing result files so that a reader never sees a half-written one."""
import contextlib
import hashlib
import json
import os
import tempfile


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# What open() would give a new file: mkstemp makes its files private (0600), and the rename
# would keep that, leaving checkpoints, reports and exports unreadable to anyone else.
_NEW_FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_open(path, mode="w"):
    """Open a file to write whose contents appear at `path` only once the block completes:
    a temporary file in the same folder, renamed over `path` at the end. On any error the
    temporary file is removed and an old `path` stays as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1],
                                   dir=folder)
    try:
        with os.fdopen(handle, mode) as f:
            yield f
        os.chmod(tmp, _NEW_FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path, obj):
    """Write `obj` as JSON to `path` atomically (`atomic_open`): on any error (e.g. a value
    JSON cannot hold) the old file stays as it was."""
    with atomic_open(path) as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def file_sha256(path):
    """The SHA-256 of a file's contents, as hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
