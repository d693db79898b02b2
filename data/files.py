"""Where a classification data root keeps its files, checked before anything reads them.

No MXNet import: the ONNX Runtime benchmark reads the same files on machines without MXNet.
"""
import os


class DataError(ValueError):
    """The data given cannot be read; the message says what to do."""


def record_files(data_root, split):
    """Paths of `split`.rec and `split`.idx under `data_root`, checked to exist and be readable.

    Raises
    ------
    DataError
        Naming the missing or unreadable file and how to make it.
    """
    if not os.path.isdir(data_root):
        raise DataError(f"data root {data_root!r} is not a directory; pass --data-root with the "
                        f"folder holding train.rec/.idx and val.rec/.idx "
                        f"(make them with `python -m data.im2rec`)")
    rec = os.path.join(data_root, f"{split}.rec")
    idx = os.path.join(data_root, f"{split}.idx")
    if not os.path.isfile(rec):
        raise DataError(f"{rec} does not exist; create it with "
                        f"`python -m data.im2rec {os.path.join(data_root, split)} IMAGE_FOLDER`")
    if not os.path.isfile(idx):
        raise DataError(f"{rec} has no index {idx}; DALI needs it to shard the data. Rebuild "
                        f"it with `python -m data.im2rec --index-only {rec}`")
    for path in (rec, idx):
        if not os.access(path, os.R_OK):
            raise DataError(f"{path} is not readable (check its permissions)")
        if os.path.getsize(path) == 0:
            raise DataError(f"{path} is empty; recreate it with `python -m data.im2rec`")
    return rec, idx
