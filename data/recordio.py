"""The RecordIO file format, read and written in plain Python.

The RecordIO layout is dmlc-core's, the one ``mx.recordio``, ``mx.io.ImageRecordIter`` and
DALI's ``readers.mxnet`` read::

    record  = magic(uint32 0xced7230a) lrec(uint32: cflag << 29 | length) data pad-to-4
    payload = IRHeader(uint32 flag, float32 label, uint64 id, uint64 id2)
              [flag float32 labels when flag > 0] image bytes

A payload that contains the magic number at a 4-byte-aligned offset is split into parts
(cflag 1 = first, 2 = middle, 3 = last) with the magic dropped; readers put it back.
The index file (``.idx``) holds one ``key<TAB>byte offset`` line per record.

No MXNet import, so im2rec's worker processes stay light, its CLI starts quickly, and the
benchmark can write data sets on machines without MXNet. ``tests/data/test_im2rec.py`` checks
the bytes against ``mx.recordio``.
"""
import os
import struct
import sys
from collections import namedtuple

from engine.files import atomic_open

__all__ = ['RECORDIO_MAGIC', 'IRHeader', 'RecordFileWriter', 'build_index', 'frame_record',
           'iter_records', 'pack_image_record', 'read_index', 'read_record', 'records_left_out',
           'unpack_image_record']

RECORDIO_MAGIC = 0xCED7230A
_MAGIC = struct.pack('<I', RECORDIO_MAGIC)
_U32 = struct.Struct('<I')
_IR_HEADER = struct.Struct('<IfQQ')
_MAX_LEN = (1 << 29) - 1

IRHeader = namedtuple('IRHeader', ['flag', 'label', 'id', 'id2'])


# ----------------------------------------------------------------------------- records
def frame_record(payload):
    """Frame one payload as RecordIO bytes, byte-identical to dmlc-core's writer.

    Parameters
    ----------
    payload : bytes
        Record data (for image records, the output of :func:`pack_image_record`).

    Returns
    -------
    bytes
        Magic, length word(s), data and zero padding to a multiple of 4 bytes.
    """
    n = len(payload)
    if n > _MAX_LEN:
        raise ValueError('RecordIO records must be smaller than 2**29 bytes, got %d' % n)
    out = bytearray()
    start = 0
    pos = payload.find(_MAGIC)
    while pos != -1:
        if pos % 4 == 0:  # only aligned copies of the magic are escaped, as dmlc-core does
            out += _MAGIC + _U32.pack(((1 if start == 0 else 2) << 29) | (pos - start))
            out += payload[start:pos]
            start = pos + 4
            pos = payload.find(_MAGIC, start)
        else:
            pos = payload.find(_MAGIC, pos + 1)
    out += _MAGIC + _U32.pack(((3 if start else 0) << 29) | (n - start)) + payload[start:]
    out += b'\0' * (-n % 4)
    return bytes(out)


def _read_part(f, offset):
    head = f.read(8)
    if not head:
        return None, None
    if len(head) < 8:
        raise ValueError('truncated RecordIO file: %d stray bytes at offset %d'
                         % (len(head), offset))
    magic, lrec = struct.unpack('<II', head)
    if magic != RECORDIO_MAGIC:
        raise ValueError('not a RecordIO record at offset %d (magic 0x%08x)' % (offset, magic))
    length = lrec & _MAX_LEN
    data = f.read(length)
    f.read(-length % 4)
    if len(data) < length:
        raise ValueError('truncated RecordIO file: record at offset %d needs %d bytes, has %d'
                         % (offset, length, len(data)))
    return lrec >> 29, data


def read_record(f, offset):
    """The payload of the record at byte `offset` of the open ``.rec`` file `f` (its parts
    joined), or None at the end of the file; `f` is left at the next record.

    Raises
    ------
    ValueError
        If no record starts at `offset`, or the file ends inside it.
    """
    f.seek(offset)
    cflag, data = _read_part(f, offset)
    if data is None:
        return None
    parts = [data]
    while cflag in (1, 2):
        cflag, data = _read_part(f, f.tell())
        if data is None or cflag not in (2, 3):
            raise ValueError('broken multi-part record at offset %d' % offset)
        parts += [_MAGIC, data]
    return b''.join(parts)


def iter_records(rec_path):
    """Yield ``(offset, payload)`` for every record of a ``.rec`` file, in file order.

    Raises
    ------
    ValueError
        If the file is not RecordIO or ends inside a record.
    """
    with open(rec_path, 'rb') as f:
        offset = 0
        while (payload := read_record(f, offset)) is not None:
            yield offset, payload
            offset = f.tell()


def _record_end(f, offset, size):
    """The offset after the record at `offset` from its headers alone (the data is seeked
    over), or None when no whole record starts there."""
    while True:
        f.seek(offset)
        head = f.read(8)
        if len(head) < 8:
            return None
        magic, lrec = struct.unpack('<II', head)
        offset += 8 + ((lrec & _MAX_LEN) + 3) // 4 * 4
        if magic != RECORDIO_MAGIC or offset > size:
            return None
        if lrec >> 29 in (0, 3):  # a whole record, or the last part of one
            return offset


def records_left_out(rec_path, offsets):
    """How many records of `rec_path` lie between the records at `offsets` (the byte
    offsets of an ``.idx``) or after the last one: records the index leaves out.

    ``mx.io.ImageRecordIter`` reads every byte from one index offset to the next, so it
    still decodes such records; DALI and ``mx.recordio`` read one record per entry. Only
    record headers are read (a seek and 8 bytes per record).
    """
    size = os.path.getsize(rec_path)
    starts = set(offsets)
    missing = 0
    with open(rec_path, 'rb') as f:
        for offset in sorted(starts):
            position = _record_end(f, offset, size)
            while position is not None and position < size and position not in starts:
                missing += 1
                position = _record_end(f, position, size)
    return missing


def pack_image_record(label, record_id, image, id2=0):
    """Build an image record payload (``mx.recordio.pack`` layout).

    Parameters
    ----------
    label : float or sequence of float
        One label (stored in the header, ``flag = 0``) or several (stored as float32 after the
        header, ``flag = len(label)``).
    record_id : int
        Header id; im2rec stores the ``.lst`` index here, as MXNet's tool does.
    image : bytes
        Encoded image.
    """
    if isinstance(label, (list, tuple)) and len(label) > 1:
        labels = struct.pack('<%df' % len(label), *label)
        return _IR_HEADER.pack(len(label), 0.0, record_id, id2) + labels + image
    if isinstance(label, (list, tuple)):
        label = label[0]
    return _IR_HEADER.pack(0, float(label), record_id, id2) + image


def unpack_image_record(payload):
    """Split a payload into ``(IRHeader, image bytes)``; multi-labels become a tuple."""
    header = IRHeader(*_IR_HEADER.unpack_from(payload))
    body = payload[_IR_HEADER.size:]
    if header.flag > 0:
        labels = struct.unpack_from('<%df' % header.flag, body)
        header = header._replace(label=labels)
        body = body[4 * header.flag:]
    return header, body


def read_index(idx_path):
    """Return the ``[(key, offset), ...]`` lines of a ``.idx`` file."""
    with open(idx_path) as f:
        return [(int(k), int(v)) for k, v in (line.split('\t') for line in f if line.strip())]


class RecordFileWriter:
    """Write ``.rec`` + ``.idx`` through ``*.tmp`` files renamed into place on :meth:`commit`.

    A run that dies before :meth:`commit` leaves only ``*.tmp`` files, never a ``.rec`` that
    looks complete. On commit the old ``.idx`` goes first, so a crash between the two renames
    leaves a ``.rec`` without ``.idx`` (rebuild it with :func:`build_index`), not a stale pair.

    Parameters
    ----------
    rec_path, idx_path : str
        Final output paths.
    """

    def __init__(self, rec_path, idx_path):
        self.rec_path, self.idx_path = rec_path, idx_path
        self._rec = open(rec_path + '.tmp', 'wb')
        try:
            self._idx = open(idx_path + '.tmp', 'w')
        except OSError:
            self._rec.close()
            os.remove(rec_path + '.tmp')
            raise
        self.offset = 0
        self.count = 0
        self.done = False

    def write(self, key, payload):
        """Append one record under integer ``key``."""
        framed = frame_record(payload)
        self._rec.write(framed)
        self._idx.write('%d\t%d\n' % (key, self.offset))
        self.offset += len(framed)
        self.count += 1

    def commit(self):
        """Flush to disk and rename the temporary files into place."""
        for f in (self._rec, self._idx):
            f.flush()
            os.fsync(f.fileno())
            f.close()
        if os.path.exists(self.idx_path):
            os.remove(self.idx_path)
        os.replace(self.rec_path + '.tmp', self.rec_path)
        os.replace(self.idx_path + '.tmp', self.idx_path)
        self.done = True

    def abort(self):
        """Close and delete the temporary files."""
        for f, path in ((self._rec, self.rec_path), (self._idx, self.idx_path)):
            f.close()
            if os.path.exists(path + '.tmp'):
                os.remove(path + '.tmp')
        self.done = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if not self.done:
            self.abort()


def build_index(rec_path, idx_path=None):
    """Rebuild the ``.idx`` of an existing ``.rec`` (DALI's ``readers.mxnet`` needs one).

    Keys are the record header ids, which im2rec sets to the ``.lst`` index, so the rebuilt
    file equals the one im2rec wrote.

    Parameters
    ----------
    rec_path : str
        The ``.rec`` file.
    idx_path : str, optional
        Output path; defaults to ``rec_path`` with ``.idx`` instead of ``.rec``.

    Returns
    -------
    int
        Number of records indexed.
    """
    if idx_path is None:
        idx_path = os.path.splitext(rec_path)[0] + '.idx'
    lines = []
    for offset, payload in iter_records(rec_path):
        if len(payload) < _IR_HEADER.size:
            raise ValueError('record at offset %d of %s is too short for an image header'
                             % (offset, rec_path))
        lines.append('%d\t%d\n' % (_IR_HEADER.unpack_from(payload)[2], offset))
    with atomic_open(idx_path) as f:
        f.writelines(lines)
    return len(lines)
