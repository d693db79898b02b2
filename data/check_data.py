"""The quick check before training (``--check-data``): decode a sample of each split.

A bad record found hours into a run costs those hours; a sample of N records (or images)
spread over each file, decoded as the readers decode them, finds a damaged or foreign data
set in seconds. ``./runner`` runs it before starting any worker, train.py (run alone) on
rank 0 before building its loaders.
"""
import argparse
import time

from data.coco import CocoError
from data.files import DataError, record_files
from data.record_check import check_records, describe_bad, read_entries, repair_command

__all__ = ['CHECK_SAMPLE', 'check_count', 'check_data']

CHECK_SAMPLE = 1000  # records per split when --check-data is given without a number


def check_count(text):
    """argparse type of --check-data: a positive count, or 'all' (0)."""
    if text == "all":
        return 0
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'all', got {text!r}")
    return value


def _spread(items, count):
    if 0 < count < len(items):
        return [items[i * len(items) // count] for i in range(count)]
    return items


def check_data(data_root, splits, count, detection=False, num_threads=None):
    """Decode `count` records (images) of each split (0: all of them).

    Parameters
    ----------
    data_root : str
    splits : sequence of str
        RecordIO splits ("train", "val"), or COCO split names for `detection`.
    count : int
    detection : bool
        `data_root` is a COCO-layout folder.
    num_threads : int, optional

    Returns
    -------
    list of str
        What was checked, one line per split.

    Raises
    ------
    DataError
        Naming each bad record (image) and the command that finds or leaves out the rest.
    """
    from data.coco_check import check_coco_split
    lines, problems = [], []
    for split in splits:
        start = time.perf_counter()
        if detection:
            try:
                found = check_coco_split(data_root, split, count, num_threads)
            except CocoError as error:
                raise DataError(str(error)) from None
            if found:
                problems.append(f"{len(found)} problem(s) in {split}: {'; '.join(found[:10])}"
                                f"{' ...' if len(found) > 10 else ''}; list them all with "
                                f"`python -m data.coco_check {data_root} --splits {split}`")
            checked = f"{split} images"
        else:
            rec, idx = record_files(data_root, split)
            entries = read_entries(idx)
            sample = _spread(entries, count)
            bad = check_records(rec, sample, num_threads)
            if bad:
                problems.append(f"{len(bad)} of {len(sample)} records checked in {rec} do "
                                f"not decode: {'; '.join(describe_bad(bad[:10]))}"
                                f"{' ...' if len(bad) > 10 else ''}; find every one and "
                                f"leave them out of the index with `{repair_command(rec)}`")
            checked = f"{len(sample)} of {len(entries)} records of {rec}"
        lines.append(f"checked {checked} in {time.perf_counter() - start:.1f} s")
    if problems:
        raise DataError("--check-data: " + " | ".join(problems))
    return lines
