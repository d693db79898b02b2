"""Image files checked, decoded once and made ready for a record file (used by im2rec).

Every input is decoded once: corrupt, truncated, empty and non-image files raise `BadImage`
with the reason. PNG, GIF (first frame), BMP, TIFF, WebP, CMYK and greyscale images become
3-channel JPEGs; valid 8-bit YCbCr baseline/progressive JPEGs can pass through with their
bytes untouched. OpenCV is imported inside the functions, so importing this module is cheap.
"""
import os
import struct
import sys
from collections import namedtuple

__all__ = ['BadImage', 'JpegInfo', 'PreparedImage', 'check_gif', 'check_png', 'decode_image',
           'init_worker', 'inspect_jpeg', 'is_pass_through_jpeg', 'prepare_image',
           'prepare_task', 'sniff_format']

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
