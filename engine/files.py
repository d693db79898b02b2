"""Writing result files so that a reader never sees a half-written one."""
import hashlib
import json
import os
import tempfile


def write_json(path, obj):
    """Write `obj` as JSON to `path` atomically: a temporary file in the same folder, renamed
    over `path` once complete; on any error (e.g. a value JSON cannot hold) the old file
    stays as it was."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(handle, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def file_sha256(path):
    """The SHA-256 of a file's contents, as hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
