"""Which encoded images the training readers cannot decode, found by decoding them as they do.

A sample counts as bad when DALI's CPU image decoder (the one the `dali-cpu` pipelines use;
`dali-gpu` falls back to it for what nvJPEG does not take) fails on it, or when OpenCV's
`imdecode` (what `mx.io.ImageRecordIter` calls) returns nothing. Measured on DALI 2.4 and
MXNet 1.9.1: a truncated JPEG, random bytes and an empty record are bad (DALI fails on all
three; ImageRecordIter on the last two); a PNG or a CMYK JPEG is not (both decode to RGB).

DALI has no option to skip a sample that fails to decode (its readers cannot be asked for a
replacement; a failed batch invalidates the pipeline), so the check runs one small DALI
pipeline fed with batches of encoded images; DALI's threads decode a batch in parallel, so
one process uses every core it is given. Images whose structure is already wrong (cut short,
not an image format) or that OpenCV refuses are decoded by DALI one at a time instead: DALI
2.4 crashed now and then (segmentation fault) on 64-image batches holding several bad
images, never on a bad image alone (60 runs each). A batch that fails anyway is decoded
again one image at a time, on a rebuilt pipeline, to find the culprits.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from data.image_files import (BadImage, _call_capturing_stderr, check_png, decode_image,
                               inspect_jpeg, sniff_format)

__all__ = ['DecodeChecker', 'describe_failure', 'keep_failed']

BATCH = 64
# DALI 2.4 can crash (segmentation fault, seen in 2-worker training runs) when a pipeline
# that failed is destroyed; failed pipelines are therefore kept until the process ends.
_FAILED = []


def keep_failed(pipeline_or_iterator):
    """Keep a failed DALI pipeline (or the iterator holding it) alive, never destroyed."""
    _FAILED.append(pipeline_or_iterator)


def describe_failure(data):
    """Why `data` (encoded image bytes) does not decode, in words: the structural problem
    when one is found (truncated JPEG, not an image, empty record)."""
    if not data:
        return 'empty record (0 image bytes)'
    try:
        decode_image('', data)
    except BadImage as exc:
        return str(exc)
    except Exception as exc:  # a file odd enough to break the describer is still bad
        return 'undecodable (%s: %s)' % (type(exc).__name__, exc)
    return "DALI's image decoder fails on it"


def _opencv_decodes(data):
    import cv2
    if not data:
        return False
    # A reduced decode still reads every entropy-coded segment (truncation and corrupt
    # data are found) for an eighth of the pixel work; ImageRecordIter fails only when
    # imdecode returns nothing.
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_8)
    return image is not None and image.size > 0


def _structure_ok(data):
    """False for bytes that are no image format, or a JPEG or PNG cut short or broken."""
    fmt = sniff_format(data)
    try:
        if fmt == 'jpeg':
            inspect_jpeg(data)
        elif fmt == 'png':
            check_png(data)
    except BadImage:
        return False
    return fmt is not None


class DecodeChecker:
    """Decode batches of encoded images the way the training readers do; report the bad ones.

    Parameters
    ----------
    num_threads : int
        DALI and OpenCV threads (default: every core).
    """

    def __init__(self, num_threads=None):
        self.num_threads = max(1, num_threads or os.cpu_count() or 1)
        self._pipe = None
        self._pool = ThreadPoolExecutor(self.num_threads)

    def _pipeline(self):
        if self._pipe is None:
            from nvidia.dali import fn, pipeline_def, types

            # Not pipelined, not asynchronous: each run decodes exactly the batch just fed.
            @pipeline_def(batch_size=BATCH, num_threads=self.num_threads, device_id=None,
                          prefetch_queue_depth=1)
            def decode():
                encoded = fn.external_source(name='encoded', dtype=types.UINT8)
                return fn.decoders.image(encoded, device='cpu', output_type=types.RGB)
            self._pipe = decode()
            self._pipe.build()
        return self._pipe

    def _dali_decodes(self, images):
        """True when DALI decodes the whole batch. A pipeline that failed is no longer
        usable, so it is dropped (and rebuilt when needed)."""
        arrays = [np.frombuffer(image, np.uint8) for image in images]
        pipe = self._pipeline()

        def run():
            pipe.feed_input('encoded', arrays)
            pipe.run()
        try:
            _call_capturing_stderr(run)  # DALI prints each decoder error there: kept quiet
            return True
        except RuntimeError:
            keep_failed(self._pipe)
            self._pipe = None
            return False

    def check(self, images):
        """The problems of a list of encoded images: a list of None (good) or a reason."""
        problems = [None] * len(images)
        for start in range(0, len(images), BATCH):
            chunk = images[start:start + BATCH]
            opencv = list(self._pool.map(_opencv_decodes, chunk))
            suspect = [not image or not ok or not _structure_ok(image)
                       for image, ok in zip(chunk, opencv)]
            batch = [image for image, s in zip(chunk, suspect) if not s]
            batch_ok = self._dali_decodes(batch) if batch else True
            for i, image in enumerate(chunk):
                if not image or not opencv[i]:  # DALI refuses empty samples before decoding
                    problems[start + i] = describe_failure(image)
                elif (suspect[i] or not batch_ok) and not self._dali_decodes([image]):
                    problems[start + i] = describe_failure(image)
        return problems

    def close(self):
        self._pool.shutdown()
        self._pipe = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
