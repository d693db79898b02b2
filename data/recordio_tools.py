"""RecordIO file format and image-file checks used by :mod:`data.im2rec`.

The RecordIO layout is dmlc-core's, the one ``mx.recordio``, ``mx.io.ImageRecordIter`` and
DALI's ``readers.mxnet`` read::

    record  = magic(uint32 0xced7230a) lrec(uint32: cflag << 29 | length) data pad-to-4
    payload = IRHeader(uint32 flag, float32 label, uint64 id, uint64 id2)
              [flag float32 labels when flag > 0] image bytes

A payload that contains the magic number at a 4-byte-aligned offset is split into parts
(cflag 1 = first, 2 = middle, 3 = last) with the magic dropped; readers put it back.
The index file (``.idx``) holds one ``key<TAB>byte offset`` line per record.

Pure Python (no MXNet import), so the writer runs in light worker processes and the CLI
starts quickly. ``tests/data/test_im2rec.py`` checks the bytes against ``mx.recordio``.
"""
import os
import struct
import sys
from collections import namedtuple

__all__ = ['RECORDIO_MAGIC', 'BadImage', 'JpegInfo', 'PreparedImage', 'RecordFileWriter',
           'build_index', 'check_gif', 'check_png', 'decode_image', 'frame_record',
           'init_worker', 'inspect_jpeg', 'is_pass_through_jpeg', 'iter_records',
           'pack_image_record', 'prepare_image', 'prepare_task', 'read_index', 'sniff_format',
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


def iter_records(rec_path):
    """Yield ``(offset, payload)`` for every record of a ``.rec`` file, in file order.

    Raises
    ------
    ValueError
        If the file is not RecordIO or ends inside a record.
    """
    with open(rec_path, 'rb') as f:
        while True:
            offset = f.tell()
            cflag, data = _read_part(f, offset)
            if data is None:
                return
            parts = [data]
            while cflag in (1, 2):
                cflag, data = _read_part(f, f.tell())
                if data is None or cflag not in (2, 3):
                    raise ValueError('broken multi-part record at offset %d' % offset)
                parts += [_MAGIC, data]
            yield offset, b''.join(parts)


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
    with open(idx_path + '.tmp', 'w') as f:
        f.writelines(lines)
    os.replace(idx_path + '.tmp', idx_path)
    return len(lines)


# ----------------------------------------------------------------------------- images
class BadImage(Exception):
    """An input file that must not go into a record file; ``str(exc)`` is the reason."""


_SIGNATURES = [(b'\xff\xd8\xff', 'jpeg'), (b'\x89PNG\r\n\x1a\n', 'png'), (b'GIF87a', 'gif'),
               (b'GIF89a', 'gif'), (b'BM', 'bmp'), (b'II*\0', 'tiff'), (b'MM\0*', 'tiff')]


def sniff_format(data):
    """Name the image format from the first bytes (``'jpeg'``, ``'png'``, ...) or None."""
    for sig, name in _SIGNATURES:
        if data.startswith(sig):
            return name
    if data[:4] == b'RIFF' and data[8:12] == b'WEBP':
        return 'webp'
    return None


JpegInfo = namedtuple('JpegInfo', ['sof', 'precision', 'height', 'width', 'component_ids',
                                   'adobe_transform'])
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _skip_entropy_data(data, pos):
    """Return the offset of the marker that ends the entropy-coded data starting at ``pos``."""
    n = len(data)
    while True:
        k = data.find(b'\xff', pos)
        if k < 0 or k + 1 >= n:
            raise BadImage('truncated JPEG: data ends inside a scan (no end-of-image marker)')
        nxt = data[k + 1]
        if nxt == 0 or 0xD0 <= nxt <= 0xD7:  # stuffed 0xFF byte or restart marker
            pos = k + 2
        else:
            return k


def inspect_jpeg(data):
    """Walk the JPEG marker structure from SOI to EOI.

    Catches truncated files (no EOI, a segment running past the end) and broken marker
    sequences; bytes after EOI are allowed. Returns a :class:`JpegInfo` with the frame type
    (``sof`` marker: 0xC0 baseline, 0xC1 extended, 0xC2 progressive, ...), precision, size,
    component ids and the Adobe APP14 colour transform (None without that marker).

    Raises
    ------
    BadImage
        With the reason.
    """
    n = len(data)
    if data[:2] != b'\xff\xd8':
        raise BadImage('not a JPEG (no start-of-image marker)')
    pos, frame, adobe = 2, None, None
    while True:
        if pos >= n:
            raise BadImage('truncated JPEG: no end-of-image marker')
        if data[pos] != 0xFF:
            raise BadImage('corrupt JPEG: expected a marker at byte %d' % pos)
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            raise BadImage('truncated JPEG: no end-of-image marker')
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            continue
        if marker in (0x00, 0xD8):
            raise BadImage('corrupt JPEG: invalid marker 0xFF%02X at byte %d' % (marker, pos - 2))
        if pos + 2 > n:
            raise BadImage('truncated JPEG: segment header cut off')
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2 or pos + length > n:
            raise BadImage('truncated JPEG: segment 0xFF%02X runs past the end of the file'
                           % marker if length >= 2 else 'corrupt JPEG: bad segment length')
        seg = data[pos + 2:pos + length]
        if marker in _SOF:
            if len(seg) < 6 or len(seg) < 6 + 3 * seg[5]:
                raise BadImage('corrupt JPEG: short frame header')
            frame = (marker, seg[0], (seg[1] << 8) | seg[2], (seg[3] << 8) | seg[4],
                     bytes(seg[6 + 3 * i] for i in range(seg[5])))
        elif marker == 0xEE and seg[:5] == b'Adobe' and len(seg) >= 12:
            adobe = seg[11]
        pos += length
        if marker == 0xDA:
            if frame is None:
                raise BadImage('corrupt JPEG: scan before frame header')
            pos = _skip_entropy_data(data, pos)
    if frame is None:
        raise BadImage('corrupt JPEG: no frame header')
    return JpegInfo(*frame, adobe_transform=adobe)


def check_png(data):
    """Walk the PNG chunks up to IEND; raise :class:`BadImage` if the file is cut short."""
    pos, n = 8, len(data)
    while True:
        if pos + 8 > n:
            raise BadImage('truncated PNG: no IEND chunk')
        length = struct.unpack_from('>I', data, pos)[0]
        kind = data[pos + 4:pos + 8]
        if pos + 12 + length > n:
            raise BadImage('truncated PNG: chunk %r runs past the end of the file'
                           % kind.decode('latin-1'))
        if kind == b'IEND':
            return
        pos += 12 + length


def _skip_sub_blocks(data, pos):
    n = len(data)
    while True:
        if pos >= n:
            raise BadImage('truncated GIF: data ends inside a block')
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos


def check_gif(data):
    """Walk the GIF blocks up to the trailer; raise :class:`BadImage` if the file is cut short.

    Returns the number of frames.
    """
    n = len(data)
    if n < 13:
        raise BadImage('truncated GIF: no screen descriptor')
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = 0
    while True:
        if pos >= n:
            raise BadImage('truncated GIF: no trailer')
        block = data[pos]
        if block == 0x3B:
            if not frames:
                raise BadImage('GIF has no image')
            return frames
        if block == 0x21:
            pos = _skip_sub_blocks(data, pos + 2)
        elif block == 0x2C:
            if pos + 10 > n:
                raise BadImage('truncated GIF: image descriptor cut off')
            flags = data[pos + 9]
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            pos = _skip_sub_blocks(data, pos + 1)  # + LZW minimum code size byte
            frames += 1
        else:
            raise BadImage('corrupt GIF: unknown block 0x%02X at byte %d' % (block, pos))


# ----------------------------------------------------------------------------- decoding
# libjpeg / libpng messages that mean the pixels are wrong even though OpenCV returned an image.
_CORRUPTION_MESSAGES = ('Corrupt JPEG data', 'Premature end of JPEG file',
                        'Inconsistent progression', 'libpng error')
# Frame types whose bytes every reader (libjpeg, nvJPEG, DALI) decodes: 8-bit Huffman
# baseline, extended sequential and progressive.
_PASS_THROUGH_SOF = (0xC0, 0xC1, 0xC2)
_capture_file = None

PreparedImage = namedtuple('PreparedImage', ['data', 'converted', 'notes'])


def _call_capturing_stderr(fn, *args):
    """Run ``fn(*args)`` with file descriptor 2 redirected; return (result, captured text).

    libjpeg reports corrupt entropy data only as a warning printed to stderr while OpenCV
    still returns an image; capturing it is how such files are caught.
    """
    global _capture_file
    import tempfile
    try:
        if _capture_file is None:
            _capture_file = tempfile.TemporaryFile()
        fd = _capture_file.fileno()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        sys.stderr.flush()
        saved = os.dup(2)
    except OSError:
        return fn(*args), ''
    os.dup2(fd, 2)
    try:
        result = fn(*args)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    os.lseek(fd, 0, os.SEEK_SET)
    return result, os.read(fd, 1 << 16).decode('utf-8', 'replace').strip()


def _decode_gif(path, data):
    """First frame of a GIF through OpenCV's FFmpeg backend (OpenCV 4.11 wheels have no GIF
    codec); returns (frame, number of frames)."""
    import cv2
    frames = check_gif(data)
    if not cv2.videoio_registry.hasBackend(cv2.CAP_FFMPEG):
        raise BadImage('GIF is not supported by this OpenCV build (no GIF codec, no FFmpeg); '
                       'convert it to PNG')
    cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    try:
        ok, frame = cap.read()
    finally:
        cap.release()
    if not ok or frame is None:
        raise BadImage('GIF could not be decoded')
    width, height = struct.unpack_from('<HH', data, 6)
    if frame.shape[:2] != (height, width):
        raise BadImage('GIF decoded to %dx%d, header says %dx%d'
                       % (frame.shape[1], frame.shape[0], width, height))
    return frame, frames


def decode_image(path, data):
    """Decode image bytes once, strictly, to an 8-bit BGR array.

    Parameters
    ----------
    path : str
        File name, for GIFs (decoded by OpenCV's FFmpeg backend, which reads files only).
    data : bytes
        The file's content.

    Returns
    -------
    (numpy.ndarray, JpegInfo or None, str)
        Pixels (H, W, 3) uint8 BGR, the JPEG structure for JPEG inputs, and decoder messages
        that did not make the file unusable.

    Raises
    ------
    BadImage
        Empty, non-image, truncated, corrupt or undecodable input.
    """
    import cv2
    import numpy as np
    if not data:
        raise BadImage('empty file (0 bytes)')
    fmt = sniff_format(data)
    info = None
    if fmt == 'jpeg':
        info = inspect_jpeg(data)
    elif fmt == 'png':
        check_png(data)
    if fmt == 'gif':
        (img, frames), notes = _call_capturing_stderr(_decode_gif, path, data)
        if frames > 1:
            notes = ('animated GIF: kept the first of %d frames\n' % frames + notes).strip()
    else:
        img, notes = _call_capturing_stderr(
            cv2.imdecode, np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    bad = [m for m in _CORRUPTION_MESSAGES if m in notes]
    if img is None or img.size == 0:
        if fmt is None:
            raise BadImage('not an image (content is not JPEG, PNG, GIF, BMP, TIFF or WebP)')
        raise BadImage('%s could not be decoded%s' % (fmt.upper(), ': ' + notes if notes else ''))
    if bad:
        raise BadImage('corrupt %s (decoder: "%s")'
                       % ((fmt or 'image').upper(), notes.splitlines()[0]))
    if info is not None and info.height and \
            sorted(img.shape[:2]) != sorted((info.height, info.width)):
        raise BadImage('JPEG decoded to %dx%d, header says %dx%d'
                       % (img.shape[1], img.shape[0], info.width, info.height))
    return img, info, notes


def is_pass_through_jpeg(info):
    """True for an 8-bit Huffman (baseline/progressive) 3-channel YCbCr JPEG."""
    return (info is not None and info.sof in _PASS_THROUGH_SOF and info.precision == 8
            and len(info.component_ids) == 3 and info.adobe_transform != 0
            and info.component_ids != b'RGB')


def prepare_image(path, pass_through=False, resize=0, quality=95, center_crop=False):
    """Read, validate and (re-)encode one image file for a record.

    Every file is decoded once. With ``pass_through``, a valid 3-channel baseline/progressive
    JPEG keeps its bytes; everything else (PNG, GIF, BMP, greyscale or CMYK JPEG, ...) is
    re-encoded as a 3-channel JPEG at ``quality``, after the optional center crop and
    shorter-side ``resize``. Alpha channels are dropped, as OpenCV's ``IMREAD_COLOR`` does.

    Returns
    -------
    PreparedImage
        ``data`` (JPEG bytes), ``converted`` (False when passed through) and ``notes``.

    Raises
    ------
    BadImage
        If the file must be skipped; the message says why.
    """
    import cv2
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as exc:
        raise BadImage('cannot read file: %s' % (exc.strerror or exc)) from None
    img, info, notes = decode_image(path, data)
    if pass_through and is_pass_through_jpeg(info):
        return PreparedImage(data, False, notes)
    if center_crop:
        h, w = img.shape[:2]
        s = min(h, w)
        img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    if resize:
        h, w = img.shape[:2]
        size = (resize, h * resize // w) if h > w else (w * resize // h, resize)
        interp = cv2.INTER_AREA if resize < min(h, w) else cv2.INTER_LINEAR
        img = cv2.resize(img, size, interpolation=interp)
    ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise BadImage('JPEG encoding failed')
    return PreparedImage(buf.tobytes(), True, notes)


def init_worker():
    """Process-pool initializer: one OpenCV thread per worker process."""
    import cv2
    cv2.setNumThreads(1)


def prepare_task(task):
    """Pool entry point: ``task = (path, options dict)``; never raises for a bad image.

    Returns ``('ok', PreparedImage)`` or ``('bad', reason)``.
    """
    path, options = task
    try:
        return 'ok', prepare_image(path, **options)
    except BadImage as exc:
        return 'bad', str(exc)
    except Exception as exc:  # an unreadable odd file must not stop a million-image run
        return 'bad', 'unexpected %s: %s' % (type(exc).__name__, exc)
