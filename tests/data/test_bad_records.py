"""Bad records in a user's existing .rec: `python -m data.im2rec --check/--repair/--compact`
names exactly the records DALI and ImageRecordIter fail on and leaves them out; the loaders
read each good record once per epoch afterwards, and skip (or stop on) bad ones before."""
import os
import shutil
import subprocess
import sys

import mxnet as mx
import pytest

from data.loaders import DataError, LoaderConfig, build_loader
from data.recordio import read_index
from tests.conftest import BAD_KEYS, _write_damaged_recordio

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def im2rec(*args):
    return subprocess.run([sys.executable, '-m', 'data.im2rec', *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope='module')
def numbered(tmp_path_factory):
    """The damaged set with label = key (so every sample can be told apart), unrepaired."""
    root = tmp_path_factory.mktemp('numbered')
    for split in ('train', 'val'):
        _write_damaged_recordio(str(root / split), unique_labels=True)
    return root


@pytest.fixture(scope='module')
def repaired(numbered, tmp_path_factory):
    """A copy of `numbered` repaired with --check --repair, and a --compact copy of each
    split (`clean/`); returns (root, the --check/--repair outputs)."""
    root = tmp_path_factory.mktemp('repaired')
    os.makedirs(root / 'clean')
    results = {}
    for split in ('train', 'val'):
        for ext in ('.rec', '.idx'):
            shutil.copy(numbered / (split + ext), root / (split + ext))
        results[split] = im2rec('--check', root / f'{split}.rec', '--repair', '--compact',
                                root / 'clean' / split, '--no-progress')
    return root, results


def _labels(loader, passes):
    """The labels of each of `passes` passes, with the batch sizes seen."""
    out = []
    for _ in range(passes):
        labels, sizes = [], set()
        for batch in loader:
            labels += batch['label'].asnumpy().astype(int).tolist()
            sizes.add(batch['label'].shape[0])
        out.append((labels, sizes))
    return out


GOOD = sorted(set(range(64)) - set(BAD_KEYS))


def test_check_names_exactly_the_records_the_readers_fail_on(damaged_dataset):
    """The truncated JPEG, the random bytes and the empty record are reported by key,
    offset and reason, with status 1; the PNG and the CMYK JPEG, which DALI and
    ImageRecordIter decode, are not."""
    result = im2rec('--check', damaged_dataset / 'train.rec', '--no-progress')
    assert result.returncode == 1, result.stdout + result.stderr
    offsets = dict(read_index(str(damaged_dataset / 'train.idx')))
    named = [line for line in result.stdout.splitlines() if 'bad record in' in line]
    assert len(named) == len(BAD_KEYS)
    for line, key, reason in zip(named, BAD_KEYS, ('truncated JPEG', 'not an image',
                                                   'empty record')):
        assert f'key {key} at offset {offsets[key]}: {reason}' in line, line
    assert 'checked 64 records' in result.stdout and ': 3 bad' in result.stdout
    assert '--repair' in result.stdout  # the command that fixes it


def test_repair_leaves_bad_records_out_of_the_index_and_keeps_the_old_one(numbered,
                                                                          repaired):
    """--repair writes an index of the 61 good records (the .rec untouched, the old index
    kept as .idx.orig); mx.recordio then sees only those, and a second check finds none."""
    root, results = repaired
    assert results['train'].returncode == 1 and 'with 61 of 64 records' in \
        results['train'].stdout
    with open(root / 'train.idx.orig') as a, open(numbered / 'train.idx') as b:
        assert a.read() == b.read()
    with open(root / 'train.rec', 'rb') as a, open(numbered / 'train.rec', 'rb') as b:
        assert a.read() == b.read()
    reader = mx.recordio.MXIndexedRecordIO(str(root / 'train.idx'), str(root / 'train.rec'),
                                           'r')
    assert sorted(reader.keys) == GOOD
    assert [mx.recordio.unpack(reader.read_idx(k))[0].label for k in reader.keys] == GOOD
    again = im2rec('--check', root / 'train.rec', '--no-progress')
    assert again.returncode == 0 and ': 0 bad' in again.stdout, again.stdout + again.stderr


@pytest.mark.parametrize('backend', ['dali-cpu', 'mxnet'])
def test_after_repair_each_good_record_is_read_once_per_epoch(repaired, backend):
    """DALI reads the repaired index exactly; ImageRecordIter reads the --compact copy
    (it refuses the repaired index, which it would read past); training passes of a
    61-sample batch and 2-worker validation both hold every good record exactly once."""
    root, _ = repaired
    data_root = root if backend == 'dali-cpu' else root / 'clean'
    config = dict(backend=backend, batch_size=61, data_root=str(data_root),
                  image_shape=(3, 32, 32), num_threads=1, num_classes=64)
    train = build_loader(LoaderConfig(**config), 'train')
    for labels, sizes in _labels(train, 2):
        assert sorted(labels) == GOOD and sizes == {61}
    seen = []
    for rank in range(2):
        val = build_loader(LoaderConfig(**dict(config, batch_size=8, rank=rank,
                                               world_size=2)), 'val')
        seen += _labels(val, 1)[0][0]
    assert sorted(seen) == GOOD


def test_image_record_iter_refuses_an_index_that_leaves_records_out(repaired):
    """ImageRecordIter reads every byte between two index entries: on a repaired index the
    mxnet backend stops at once and says what to use instead."""
    root, _ = repaired
    with pytest.raises(DataError, match=r'leaves out 3 record\(s\).*dali-cpu.*--compact'):
        build_loader(LoaderConfig(backend='mxnet', batch_size=8, data_root=str(root),
                                  image_shape=(3, 32, 32), num_threads=1), 'train')


def test_image_record_iter_stops_on_a_bad_record_naming_it(numbered):
    with pytest.raises(DataError, match=r'cannot skip a record: key 3 at offset \d+: '
                                        r'truncated JPEG.*--repair'):
        loader = build_loader(LoaderConfig(backend='mxnet', batch_size=8,
                                           data_root=str(numbered), image_shape=(3, 32, 32),
                                           num_threads=1), 'train')
        list(loader)


def test_skip_keeps_every_pass_full_and_leaves_the_bad_records_out(numbered):
    """--bad-data skip on the unrepaired file, 2 workers: each worker's passes keep their
    length and batch size (equal steps for allreduce), no bad record ever comes out, each
    pass leaves out the bad records of its shard (counted), and validation counts every
    good record exactly once; the records left out go into the checkpoint state."""
    config = dict(backend='dali-cpu', batch_size=8, data_root=str(numbered),
                  image_shape=(3, 32, 32), num_threads=1, world_size=2)
    seen_val = []
    for rank in range(2):
        train = build_loader(LoaderConfig(**config, rank=rank), 'train')
        length = len(train)
        for labels, sizes in _labels(train, 3):
            assert len(labels) == 8 * length and sizes == {8}
            assert not set(labels) & set(BAD_KEYS)
        first = 32 * ((rank + 3) % 2)  # DALI moves each worker to the next shard per pass
        assert train.skipped_samples == sum(first <= k < first + 32 for k in BAD_KEYS)
        assert {tuple(e)[0] for e in train.state()['excluded']} <= set(BAD_KEYS)
        val = build_loader(LoaderConfig(**dict(config, rank=rank)), 'val')
        seen_val += _labels(val, 1)[0][0]
    assert sorted(seen_val) == GOOD


def test_stop_names_the_records_and_the_repair_command(numbered):
    train = build_loader(LoaderConfig(backend='dali-cpu', batch_size=8, bad_data='stop',
                                      data_root=str(numbered), image_shape=(3, 32, 32),
                                      num_threads=1), 'train')
    with pytest.raises(DataError, match=r'key 3 at offset \d+: truncated JPEG.*key 10 .*'
                                        r'key 40 .*im2rec --check .*train.rec --repair'):
        list(train)



def test_coco_recovery_leaves_out_images_found_bad_after_a_resume(tmp_path):
    """A worker resumed with one image already left out, which then meets another bad one,
    reads a copy of the annotations without either (not the copy written at the resume)."""
    import json
    from data.bad_records import CocoImageRecovery
    from data.coco import prepare_coco
    root = tmp_path / 'coco'
    subprocess.run([sys.executable, '-m', 'data.demo', 'detection', '--out', str(root),
                    '--train-images', '6', '--val-images', '2', '--size', '64',
                    '--no-progress'], cwd=REPO, check=True, capture_output=True, timeout=300)
    dataset = prepare_coco(str(root), 'train2017', str(tmp_path / 'cache'))
    names = sorted(os.listdir(root / 'train2017'))
    recovery = CocoImageRecovery(dataset, lambda path, *rest: path, rank=0, num_shards=1,
                                 policy='skip', num_threads=1, excluded=[names[0]])

    def listed(path):
        return {image['file_name'] for image in json.load(open(path))['images']}
    assert listed(recovery.pipeline(0)) == set(names[1:])
    (root / 'train2017' / names[2]).write_bytes(b'not a jpeg')
    recovery.handle_failure(RuntimeError('DALI failed'), 0)
    assert recovery.excluded == {names[0], names[2]}
    assert listed(recovery.pipeline(0)) == set(names[1:]) - {names[2]}
