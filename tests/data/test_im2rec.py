"""Tests for data.im2rec, data.recordio and data.image_files: lists, record files read back through
mx.recordio, mx.io.ImageRecordIter and DALI, bad-file handling, determinism, index rebuild."""
import os
import shutil
import struct
import subprocess
import sys

import cv2
import numpy as np
import pytest

from data import im2rec
from data.image_files import BadImage, inspect_jpeg
from data.recordio import RecordFileWriter, build_index, iter_records, unpack_image_record

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
H, W = 48, 64


# ----------------------------------------------------------------------------- input files
def smooth_image(seed, h=H, w=W):
    """A colourful smooth BGR image (small JPEG error, so pixel checks can be tight)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (4, 5, 3)).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(big, 0, 255).astype(np.uint8)


def encode(img, ext='.jpg', *params):
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


def _segments(jpeg):
    """(marker, payload) list up to SOS and the entropy-coded data of a one-scan JPEG."""
    pos, segs = 2, []
    while True:
        marker, length = jpeg[pos + 1], struct.unpack('>H', jpeg[pos + 2:pos + 4])[0]
        segs.append((marker, jpeg[pos + 4:pos + 2 + length]))
        pos += 2 + length
        if marker == 0xDA:
            return segs, jpeg[pos:jpeg.rindex(b'\xff\xd9')]


def _segment(marker, payload):
    return bytes([0xFF, marker]) + struct.pack('>H', len(payload) + 2) + payload


def cmyk_jpeg(planes, quality=95):
    """A 4-component (Adobe CMYK) baseline JPEG with one scan per component, built from four
    greyscale JPEGs made by OpenCV (which cannot write CMYK itself)."""
    scans, tables = [], None
    for plane in planes:
        segs, data = _segments(encode(plane, '.jpg', cv2.IMWRITE_JPEG_QUALITY, quality))
        these = [s for s in segs if s[0] in (0xDB, 0xC4)]
        assert tables is None or these == tables  # same quantisation and Huffman tables
        tables, sof = these, dict(segs)[0xC0]
        scans.append(data)
    h, w = planes[0].shape
    out = b'\xff\xd8' + _segment(0xEE, b'Adobe' + struct.pack('>HHHB', 100, 0, 0, 0))
    out += b''.join(_segment(m, p) for m, p in tables if m == 0xDB)
    out += _segment(0xC0, struct.pack('>BHHB', 8, h, w, 4)
                    + b''.join(bytes([i + 1, 0x11, sof[8]]) for i in range(4)))
    out += b''.join(_segment(m, p) for m, p in tables if m == 0xC4)
    for i, data in enumerate(scans):
        out += _segment(0xDA, bytes([1, i + 1, 0x00, 0, 63, 0])) + data
    return out + b'\xff\xd9'


def gif_bytes(index_image, palette):
    """A one-frame GIF89a (LZW with a clear code every 250 pixels, so codes stay 9 bits)."""
    h, w = index_image.shape
    out = bytearray(b'GIF89a' + struct.pack('<HHBBB', w, h, 0xF7, 0, 0))
    out += palette.astype(np.uint8).tobytes() + b'\x2c' + struct.pack('<HHHHB', 0, 0, w, h, 0)
    pixels = index_image.ravel().tolist()
    codes = []
    for i in range(0, len(pixels), 250):
        codes += [256] + pixels[i:i + 250]
    codes.append(257)
    acc = nbits = 0
    data = bytearray()
    for code in codes:
        acc |= code << nbits
        nbits += 9
        while nbits >= 8:
            data.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    data += bytes([acc]) if nbits else b''
    out += b'\x08' + b''.join(bytes([len(data[i:i + 255])]) + data[i:i + 255]
                              for i in range(0, len(data), 255))
    return bytes(out + b'\x00\x3b')


def corrupt_entropy(jpeg, seed=3):
    """Overwrite 40 bytes in the middle of the scan data (no 0xFF, so the markers stay valid)."""
    rng = np.random.default_rng(seed)
    start = len(jpeg) // 2
    junk = rng.integers(0, 255, 40, dtype=np.uint8).tobytes()
    return jpeg[:start] + junk + jpeg[start + 40:]


# relpath -> (bytes, expected RGB pixels or None for a bad file, what happens with pass-through)
def build_sources():
    imgs = [smooth_image(i) for i in range(10)]
    grey = cv2.cvtColor(imgs[4], cv2.COLOR_BGR2GRAY)
    k = np.arange(256)
    palette = np.stack([k, 255 - k, 128 + k // 2], 1).astype(np.uint8)  # smooth ramp
    index = (np.arange(H)[:, None] + 3 * np.arange(W)[None]).astype(np.uint8)
    planes = [imgs[5][..., 2], imgs[5][..., 1], imgs[5][..., 0], np.full((H, W), 255, np.uint8)]
    good = encode(imgs[9], '.jpg', cv2.IMWRITE_JPEG_QUALITY, 90)
    files = {
        'a_jpeg/base.jpg': (encode(imgs[0], '.jpg', cv2.IMWRITE_JPEG_QUALITY, 90), 'kept'),
        'a_jpeg/prog.jpg': (encode(imgs[1], '.jpg', cv2.IMWRITE_JPEG_PROGRESSIVE, 1), 'kept'),
        'a_jpeg/rgb.png': (encode(imgs[2], '.png'), 'converted'),
        'a_jpeg/alpha.png': (encode(np.dstack([imgs[3], np.full((H, W), 128, np.uint8)]), '.png'),
                             'converted'),
        'b_other/grey.png': (encode(grey, '.png'), 'converted'),
        'b_other/grey.jpg': (encode(grey, '.jpg', cv2.IMWRITE_JPEG_QUALITY, 95), 'converted'),
        'b_other/cmyk.jpg': (cmyk_jpeg(planes), 'converted'),
        'b_other/palette.gif': (gif_bytes(index, palette), 'converted'),
        'c_bad/ok.JPG': (good, 'kept'),
        'c_bad/corrupt.jpg': (corrupt_entropy(good), 'corrupt'),
        'c_bad/truncated.jpg': (good[:len(good) * 6 // 10], 'truncated'),
        'c_bad/empty.jpg': (b'', 'empty'),
        'c_bad/notes.jpg': (b'shopping list: eggs, milk\n', 'not an image'),
        'c_bad/cut.png': (encode(imgs[6], '.png')[:300], 'truncated'),
    }
    expected = {}
    for rel, (data, fate) in files.items():
        if rel.endswith('.gif'):
            expected[rel] = palette[index]  # palette is RGB
        elif fate in ('kept', 'converted'):
            expected[rel] = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
    return files, expected


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp('images')
    files, expected = build_sources()
    for rel, (data, _) in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / 'c_bad' / 'readme.txt').write_text('not listed: extension not in --exts')
    return str(root), files, expected


@pytest.fixture(scope='module')
def records(tree, tmp_path_factory):
    """One pass-through run (in-process) over the whole tree."""
    root, files, expected = tree
    out = tmp_path_factory.mktemp('rec')
    lists, folders = im2rec.make_list(str(out / 'data'), root, recursive=True)
    original = str(out / 'original.lst.keep')
    shutil.copy(lists[0], original)
    result = im2rec.write_record_file(lists[0], root, pass_through=True, progress=False)
    return dict(lst=lists[0], original=original, result=result,
                items=im2rec.read_list(original), folders=folders)


def run_cli(*args):
    return subprocess.run([sys.executable, '-m', 'data.im2rec', *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


# ----------------------------------------------------------------------------- lists
def test_list_labels_follow_sorted_folders(tree, tmp_path):
    root, files, _ = tree
    lists, folders = im2rec.make_list(str(tmp_path / 'x'), root, recursive=True, shuffle=False)
    assert lists == [str(tmp_path / 'x.lst')]
    assert folders == ['a_jpeg', 'b_other', 'c_bad']
    items = im2rec.read_list(lists[0])
    assert [it.path for it in items] == sorted(files)  # readme.txt is not an image extension
    assert [it.index for it in items] == list(range(len(files)))
    for it in items:
        assert it.labels == (float(folders.index(os.path.dirname(it.path))),)


def test_cli_list_is_shuffled_deterministically(tree, tmp_path):
    root = tree[0]
    for name in ('one', 'two'):
        res = run_cli('--list', '--recursive', tmp_path / name, root)
        assert res.returncode == 0, res.stderr
        assert '0\ta_jpeg' in res.stdout and '3 classes' in res.stdout
    one = (tmp_path / 'one.lst').read_bytes()
    assert one == (tmp_path / 'two.lst').read_bytes()
    plain = im2rec.make_list(str(tmp_path / 'plain'), root, recursive=True, shuffle=False)[0][0]
    assert sorted(one.splitlines()) == sorted(open(plain, 'rb').read().splitlines())
    assert one != open(plain, 'rb').read()


@pytest.mark.parametrize('train, test', [(0.6, 0.2), (0.8, 0.0)])
def test_train_val_test_split_sizes(tree, tmp_path, train, test):
    root, files, _ = tree
    n = len(files)
    lists, _ = im2rec.make_list(str(tmp_path / 'p'), root, recursive=True, train_ratio=train,
                                test_ratio=test)
    parts = {os.path.basename(p): im2rec.read_list(p) for p in lists}
    expected = {'p_train.lst': int(n * train), 'p_val.lst': n - int(n * train) - int(n * test)}
    if test:
        expected['p_test.lst'] = int(n * test)
    assert {k: len(v) for k, v in parts.items()} == expected
    paths = [it.path for v in parts.values() for it in v]
    assert sorted(paths) == sorted(files)  # disjoint and complete


# ----------------------------------------------------------------------------- records
def good_items(records):
    skipped = {item.path for item, _ in records['result'].skipped}
    return [it for it in records['items'] if it.path not in skipped]


def test_bad_files_are_reported_and_skipped(tree, records, capfd):
    root, files, _ = tree
    bad = {rel: fate for rel, (_, fate) in files.items() if fate not in ('kept', 'converted')}
    skipped = {item.path: reason for item, reason in records['result'].skipped}
    assert set(skipped) == set(bad)
    for rel, fate in bad.items():
        assert fate in skipped[rel].lower(), (rel, skipped[rel])
    report = open(os.path.splitext(records['lst'])[0] + '.skipped.tsv').read()
    assert all(rel in report for rel in bad)
    assert records['result'].written == len(files) - len(bad)
    # the .lst now lists exactly what the .rec holds, with the original indices and labels
    assert im2rec.read_list(records['lst']) == good_items(records)


def test_records_match_list_and_pass_through_keeps_bytes(tree, records):
    import mxnet as mx
    root, files, _ = tree
    lst_base = os.path.splitext(records['lst'])[0]
    reader = mx.recordio.MXIndexedRecordIO(lst_base + '.idx', lst_base + '.rec', 'r')
    good = good_items(records)
    assert reader.keys == [it.index for it in good]  # list order, list indices
    for it in good:
        header, img = mx.recordio.unpack(reader.read_idx(it.index))
        assert (header.id, header.label, header.flag) == (it.index, it.labels[0], 0)
        fate = files[it.path][1]
        if fate == 'kept':
            assert img == files[it.path][0]
        else:
            info = inspect_jpeg(img)
            assert img != files[it.path][0] and len(info.component_ids) == 3
    reader.close()
    ours = [unpack_image_record(p) for _, p in iter_records(lst_base + '.rec')]
    assert [h.id for h, _ in ours] == [it.index for it in good]


def _check_pixels(name, images, labels, good, expected, folders):
    assert len(images) == len(good)
    for img, label, it in zip(images, labels, good):
        ref = expected[it.path].astype(np.float32)
        diff = np.abs(np.asarray(img, np.float32) - ref)
        assert label == folders.index(os.path.dirname(it.path)), (name, it.path)
        assert diff.mean() < 2.5 and np.percentile(diff, 99) < 16, (name, it.path, diff.mean())


def test_image_record_iter_reads_labels_and_pixels(tree, records):
    import mxnet as mx
    good = good_items(records)
    rec = os.path.splitext(records['lst'])[0] + '.rec'
    it = mx.io.ImageRecordIter(path_imgrec=rec, data_shape=(3, H, W), batch_size=len(good),
                               preprocess_threads=1, shuffle=False)
    batch = next(iter(it))
    images = batch.data[0].asnumpy().transpose(0, 2, 3, 1)
    _check_pixels('ImageRecordIter', images, batch.label[0].asnumpy(), good, tree[2],
                  records['folders'])


def test_dali_reader_reads_labels_and_pixels(tree, records):
    from nvidia.dali import fn, pipeline_def, types
    good = good_items(records)
    base = os.path.splitext(records['lst'])[0]

    @pipeline_def(batch_size=len(good), num_threads=1, device_id=None)
    def pipe():
        jpegs, labels = fn.readers.mxnet(path=[base + '.rec'], index_path=[base + '.idx'],
                                         random_shuffle=False, name='Reader')
        return fn.decoders.image(jpegs, device='cpu', output_type=types.RGB), labels

    p = pipe()
    p.build()
    images, labels = p.run()
    _check_pixels('DALI', [np.array(images[i]) for i in range(len(good))],
                  [float(np.array(labels[i])[0]) for i in range(len(good))], good, tree[2],
                  records['folders'])


def test_same_input_gives_identical_bytes_with_two_workers(tree, records, tmp_path):
    root = tree[0]
    lst = str(tmp_path / 'again.lst')
    shutil.copy(records['original'], lst)
    result = im2rec.write_record_file(lst, root, pass_through=True, num_workers=2, progress=False)
    base = os.path.splitext(records['lst'])[0]
    for ext in ('.rec', '.idx'):
        assert open(base + ext, 'rb').read() == open(str(tmp_path / 'again') + ext, 'rb').read()
    assert [s[0] for s in result.skipped] == [s[0] for s in records['result'].skipped]


def test_index_rebuild_equals_original(records, tmp_path):
    base = os.path.splitext(records['lst'])[0]
    assert build_index(base + '.rec', str(tmp_path / 'new.idx')) == records['result'].written
    assert (tmp_path / 'new.idx').read_bytes() == open(base + '.idx', 'rb').read()
    shutil.copy(base + '.rec', tmp_path / 'copy.rec')
    res = run_cli('--index-only', tmp_path / 'copy')
    assert res.returncode == 0, res.stderr
    assert (tmp_path / 'copy.idx').read_bytes() == open(base + '.idx', 'rb').read()


def test_resize_shorter_side_and_option_conflicts(tree, tmp_path):
    root = tree[0]
    lst = tmp_path / 'r.lst'
    lst.write_text('0\t0.000000\ta_jpeg/base.jpg\n1\t1.000000\tb_other/grey.png\n')
    im2rec.write_record_file(str(lst), root, resize=24, quality=90, progress=False)
    for _, payload in iter_records(str(tmp_path / 'r.rec')):
        img = cv2.imdecode(np.frombuffer(unpack_image_record(payload)[1], np.uint8), 1)
        assert img.shape == (24, 32, 3)
    with pytest.raises(im2rec.Im2RecError, match='pass-through'):
        im2rec.write_record_file(str(lst), root, pass_through=True, resize=24, progress=False)


def test_pack_label_stores_every_label_column(tree, tmp_path):
    import mxnet as mx
    lst = tmp_path / 'm.lst'
    lst.write_text('7\t1.000000\t2.500000\ta_jpeg/base.jpg\n')
    im2rec.write_record_file(str(lst), tree[0], pack_label=True, progress=False)
    rec = mx.recordio.MXRecordIO(str(tmp_path / 'm.rec'), 'r')
    header, img = mx.recordio.unpack(rec.read())
    assert header.flag == 2 and list(header.label) == [1.0, 2.5] and header.id == 7
    assert cv2.imdecode(np.frombuffer(img, np.uint8), 1).shape == (H, W, 3)


def test_failed_run_leaves_old_output_and_no_partial_files(tree, tmp_path):
    root = tree[0]
    lst = tmp_path / 'bad.lst'
    (tmp_path / 'bad.rec').write_bytes(b'previous run')
    lst.write_text('0\t0.000000\tc_bad/empty.jpg\n1\t0.000000\tc_bad/notes.jpg\n')
    with pytest.raises(im2rec.Im2RecError, match='none of the 2 images'):
        im2rec.write_record_file(str(lst), root, progress=False)
    assert sorted(os.listdir(tmp_path)) == ['bad.lst', 'bad.rec']
    assert (tmp_path / 'bad.rec').read_bytes() == b'previous run'


@pytest.mark.parametrize('fraction', [0.1, 0.5, 0.9, 0.999])
def test_truncated_jpeg_is_caught_by_structure_check(fraction):
    data = encode(smooth_image(1), '.jpg', cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    assert inspect_jpeg(data + b'\0\0trailing bytes after EOI are fine').sof == 0xC2
    with pytest.raises(BadImage, match='truncated'):
        inspect_jpeg(data[:max(4, int(len(data) * fraction))])


# ----------------------------------------------------------------------------- format
def test_recordio_bytes_equal_mxnet_writer_also_with_escaped_magic(tmp_path):
    """Framing (incl. payloads that contain the magic number) equals MXNet's C++ writer, and
    MXNet, our reader and DALI read the payloads back."""
    import mxnet as mx
    from nvidia.dali import fn, pipeline_def
    magic = struct.pack('<I', 0xCED7230A)
    header = struct.pack('<IfQQ', 0, 1.0, 0, 0)
    images = [b'abc', b'0123' + magic + b'xy' + magic + b'z', b'12' + magic + b'unaligned',
              magic * 3, b'tail' + magic]
    payloads = [header + img for img in images]
    mxw = mx.recordio.MXIndexedRecordIO(str(tmp_path / 'mx.idx'), str(tmp_path / 'mx.rec'), 'w')
    with RecordFileWriter(str(tmp_path / 'ours.rec'), str(tmp_path / 'ours.idx')) as ours:
        for key, payload in enumerate(payloads):
            mxw.write_idx(key, payload)
            ours.write(key, payload)
        ours.commit()
    mxw.close()
    for ext in ('.rec', '.idx'):
        assert (tmp_path / ('ours' + ext)).read_bytes() == (tmp_path / ('mx' + ext)).read_bytes()
    assert [p for _, p in iter_records(str(tmp_path / 'ours.rec'))] == payloads
    mxr = mx.recordio.MXIndexedRecordIO(str(tmp_path / 'ours.idx'), str(tmp_path / 'ours.rec'), 'r')
    assert [mxr.read_idx(k) for k in range(len(payloads))] == payloads

    @pipeline_def(batch_size=len(payloads), num_threads=1, device_id=None)
    def pipe():
        data, _ = fn.readers.mxnet(path=[str(tmp_path / 'ours.rec')],
                                   index_path=[str(tmp_path / 'ours.idx')], random_shuffle=False)
        return data

    p = pipe()
    p.build()
    (out,) = p.run()
    assert [np.array(out[i]).tobytes() for i in range(len(images))] == images


# ----------------------------------------------------------------------------- CLI
def test_cli_end_to_end_with_workers_and_help(tree, tmp_path):
    root, files, _ = tree
    res = run_cli('--list', '--recursive', '--train-ratio', '0.5', tmp_path / 'd', root)
    assert res.returncode == 0, res.stderr
    res = run_cli('--pass-through', '--num-thread', '2', tmp_path / 'd', root)
    assert res.returncode == 0, res.stderr
    for part in ('train', 'val'):
        assert 'im2rec: d_%s.lst: wrote' % part in res.stdout
        assert all((tmp_path / ('d_%s%s' % (part, ext))).exists() for ext in ('.rec', '.idx'))
    assert 'skipped %s' % os.path.join(root, 'c_bad', 'empty.jpg') in res.stderr
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.tmp')]
    text = run_cli('--help').stdout
    for flag in ('--list', '--recursive', '--exts', '--train-ratio', '--test-ratio', '--chunks',
                 '--shuffle', '--no-shuffle', '--seed', '--pass-through', '--resize', '--quality',
                 '--num-thread', '--center-crop', '--pack-label', '--index-only', '--no-progress'):
        assert flag in text


def test_cli_errors_are_clear_and_non_zero(tree, tmp_path):
    root = tree[0]
    missing = tmp_path / 'no_such_folder'
    for args in (['--list', '--recursive', tmp_path / 'p', missing], [tmp_path / 'p', missing]):
        res = run_cli(*args)
        assert res.returncode != 0 and str(missing) in res.stderr and 'does not exist' in res.stderr
    res = run_cli(tmp_path / 'nothing', root)
    assert res.returncode != 0 and 'no .lst file matches' in res.stderr and '--list' in res.stderr
    (tmp_path / 'empty.lst').write_text('')
    res = run_cli(tmp_path / 'empty', root)
    assert res.returncode != 0 and 'lists no images' in res.stderr
    (tmp_path / 'imgs').mkdir()
    res = run_cli('--list', tmp_path / 'q', tmp_path / 'imgs')
    assert res.returncode != 0 and 'no files ending in' in res.stderr
    res = run_cli('--index-only', tmp_path / 'absent')
    assert res.returncode != 0 and 'absent.rec does not exist' in res.stderr
    assert not list(tmp_path.glob('*.rec'))
