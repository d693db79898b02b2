"""Find the records of a ``.rec`` that the training readers cannot decode, and leave them out.

`check_records` decodes records as the readers do (`data.decode_check`); `repair_index`
writes an ``.idx`` without the bad ones (the old one kept as ``.idx.orig``), so that a large
``.rec`` is fixed in the time it takes to read it, without rewriting it. DALI's
``readers.mxnet`` and ``mx.recordio.MXIndexedRecordIO`` read exactly the records the index
lists. ``mx.io.ImageRecordIter`` does not: it reads every byte from one index offset to the
next (dmlc-core's indexed splitter), so it still decodes records the index leaves out;
`compact_records` writes the copy without them that it needs. The command line is
``python -m data.im2rec --check PATH.rec [--repair] [--compact OUT]``.
"""
import os
import sys
from collections import namedtuple

from tqdm import tqdm

from data.decode_check import BATCH, DecodeChecker
from data.recordio import (RecordFileWriter, _IR_HEADER, read_index, read_record,
                           unpack_image_record)
from engine.files import atomic_open

__all__ = ['BadRecord', 'check_records', 'compact_records', 'describe_bad', 'repair_command',
           'repair_index']

BadRecord = namedtuple('BadRecord', ['key', 'offset', 'reason'])
BadRecord.__doc__ = """A record that fails to decode: its ``.idx`` key, byte offset and why."""


def repair_command(rec_path):
    """The command that checks `rec_path` and writes an index without its bad records."""
    return 'python -m data.im2rec --check %s --repair' % rec_path


def _image_of(f, offset):
    """The image bytes of the record at `offset`, or ``(None, reason)``."""
    try:
        payload = read_record(f, offset)
    except ValueError as exc:
        return None, 'unreadable record: %s' % exc
    if payload is None:
        return None, 'no record at this offset (past the end of the file)'
    if len(payload) < _IR_HEADER.size:
        return None, 'record of %d bytes is shorter than an image header' % len(payload)
    header, image = unpack_image_record(payload)
    return image, None


def check_records(rec_path, entries, num_threads=None, progress=False):
    """Decode the records `entries` (``[(key, offset)]``, as `read_index` returns) of
    `rec_path`; return the bad ones as a list of `BadRecord`, in the order given.

    Parameters
    ----------
    num_threads : int, optional
        Decoding threads (default: every core).
    progress : bool
        A tqdm progress bar on stderr.
    """
    bad = []
    bar = tqdm(total=len(entries), desc=os.path.basename(rec_path), unit='rec',
               file=sys.stderr, disable=not progress, mininterval=0.5)
    with open(rec_path, 'rb') as f, DecodeChecker(num_threads) as checker, bar:
        for start in range(0, len(entries), 4 * BATCH):
            chunk = entries[start:start + 4 * BATCH]
            images, readable = [], []
            for key, offset in chunk:
                image, reason = _image_of(f, offset)
                if image is None:
                    bad.append(BadRecord(key, offset, reason))
                else:
                    images.append(image)
                    readable.append((key, offset))
            for (key, offset), reason in zip(readable, checker.check(images)):
                if reason:
                    bad.append(BadRecord(key, offset, reason))
            bar.update(len(chunk))
    order = {entry: i for i, entry in enumerate(entries)}
    return sorted(bad, key=lambda b: order[(b.key, b.offset)])


def describe_bad(bad):
    """One line per bad record: key, offset and reason."""
    return ['key %d at offset %d: %s' % record for record in bad]


def repair_index(idx_path, entries, bad):
    """Write `idx_path` anew without the `bad` records; the index it replaces is kept as
    ``idx_path + '.orig'`` (an existing ``.orig`` is the first original and stays).

    Both files are written atomically: a crash leaves the old index or the new one.

    Returns
    -------
    (int, str)
        The entries written and the path of the original index.
    """
    original = idx_path + '.orig'
    if not os.path.exists(original):
        with open(idx_path, 'rb') as src, atomic_open(original, 'wb') as dst:
            dst.write(src.read())
    left_out = {(b.key, b.offset) for b in bad}
    kept = [entry for entry in entries if entry not in left_out]
    with atomic_open(idx_path) as f:
        f.writelines('%d\t%d\n' % entry for entry in kept)
    return len(kept), original


def compact_records(rec_path, entries, out_prefix, progress=False):
    """Copy the records `entries` of `rec_path` to ``out_prefix.rec`` / ``.idx`` (the same
    keys, new offsets): a file with no record the index leaves out, for ImageRecordIter.
    Written under temporary names and renamed when complete. Returns the records written."""
    with open(rec_path, 'rb') as f, \
            RecordFileWriter(out_prefix + '.rec', out_prefix + '.idx') as writer, \
            tqdm(total=len(entries), desc=os.path.basename(out_prefix + '.rec'), unit='rec',
                 file=sys.stderr, disable=not progress, mininterval=0.5) as bar:
        for key, offset in entries:
            writer.write(key, read_record(f, offset))
            bar.update()
        writer.commit()
    return writer.count


def read_entries(idx_path):
    """`read_index`, with a damaged index reported as ValueError naming the file."""
    try:
        return read_index(idx_path)
    except ValueError as exc:
        raise ValueError('%s is not a RecordIO index (%s); rebuild it with python -m '
                         'data.im2rec --index-only' % (idx_path, exc)) from None
