"""--make-data writes photo-like JPEGs into RecordIO files that MXNet and DALI read."""
import cv2
import mxnet as mx
import numpy as np

from benchmarking import photos
from data.recordio import iter_records, unpack_image_record


def _images(rec_path):
    return [unpack_image_record(payload) for _, payload in iter_records(rec_path)]


def test_make_dataset_writes_photo_like_jpegs(tmp_path):
    written = photos.make_dataset(str(tmp_path), num_images=8, num_classes=5)
    assert written["train"][0] == 8 and written["val"][0] == 2
    images = _images(str(tmp_path / "train.rec"))
    assert [header.label for header, _ in images] == [0, 1, 2, 3, 4, 0, 1, 2]
    sizes = [len(jpeg) for _, jpeg in images]
    assert written["train"][1] == sum(sizes)
    # Noise and detail like a photo: tens of KB per 500x375 JPEG, not a few KB.
    assert all(20_000 < size < 120_000 for size in sizes)
    image = cv2.imdecode(np.frombuffer(images[0][1], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (375, 500, 3)
    assert image.std() > 20  # not flat
    assert len(set(sizes)) == len(sizes)  # every image differs
    # MXNet's ImageRecordIter reads the file as it is.
    it = mx.io.ImageRecordIter(path_imgrec=str(tmp_path / "train.rec"),
                               data_shape=(3, 64, 64), batch_size=4, resize=64)
    assert it.next().data[0].shape == (4, 3, 64, 64)
