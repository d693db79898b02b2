"""Image folders to ``.lst`` lists and ``.rec``/``.idx`` RecordIO files, like MXNet's im2rec.

Usage (the flags of MXNet's ``tools/im2rec.py``)::

    python -m data.im2rec --list --recursive [--train-ratio 0.9] PREFIX ROOT   # PREFIX*.lst
    python -m data.im2rec [--pass-through] [--num-thread 4] PREFIX ROOT       # PREFIX*.rec/.idx
    python -m data.im2rec --index-only PREFIX                                 # rebuild PREFIX.idx
    python -m data.im2rec --check PREFIX.rec [--repair] [--compact OUT]        # find bad records

The output is read by ``mx.io.ImageRecordIter``, ``mx.recordio`` and DALI's ``readers.mxnet``.
Unlike MXNet's tool, every image is decoded once (strictly) while writing: empty, non-image,
truncated or corrupt files are reported by path and left out; PNG, GIF, BMP, greyscale and
CMYK inputs become 3-channel JPEGs; records follow the ``.lst`` order whatever the worker
count, so the same input gives byte-identical files.

``--check`` decodes every record of an existing ``.rec`` (one made by MXNet's tool may hold
anything) as DALI and ImageRecordIter do and names the bad ones; ``--repair`` leaves them out
of the ``.idx`` (see `data.record_check`).
"""
import argparse
import multiprocessing
import os
import random
import sys
import time
from collections import namedtuple

from tqdm import tqdm

from data.image_files import init_worker, prepare_task
from data import record_check
from data.recordio import RecordFileWriter, build_index, pack_image_record
from engine.files import atomic_open

__all__ = ['DEFAULT_EXTS', 'Im2RecError', 'ListItem', 'WriteResult', 'build_index', 'find_lists',
           'list_images', 'main', 'make_list', 'read_list', 'write_list', 'write_record_file']

DEFAULT_EXTS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp', '.tif', '.tiff', '.webp')

ListItem = namedtuple('ListItem', ['index', 'path', 'labels'])
WriteResult = namedtuple('WriteResult', ['rec_path', 'idx_path', 'written', 'converted', 'skipped',
                                         'seconds'])
WriteResult.__doc__ = """Outcome of :func:`write_record_file`: ``skipped`` is a list of
``(ListItem, reason)``; ``converted`` counts re-encoded images."""


class Im2RecError(Exception):
    """A problem with the user's input or output location; the message says what to do."""


# ----------------------------------------------------------------------------- lists
def list_images(root, recursive=False, exts=DEFAULT_EXTS):
    """List image files under ``root`` in sorted order, as MXNet's im2rec does.

    Parameters
    ----------
    root : str
        Image folder.
    recursive : bool
        Walk sub-folders (following links); every folder holding images gets the next label
        in walk order (sorted names, parents first), so for a class-per-folder tree the label
        is the index of the class folder in sorted order. Otherwise only files directly in
        ``root`` are listed, with label 0.
    exts : sequence of str
        File extensions to accept (case-insensitive, with or without the dot).

    Returns
    -------
    (list of ListItem, list of str)
        The images (index in listing order, path relative to ``root``, ``(label,)``) and the
        folder of each label, relative to ``root``.
    """
    exts = {('.' + e.lower().lstrip('.')) for e in exts}
    items, folders = [], []
    if recursive:
        walk = os.walk(root, followlinks=True)
    else:
        walk = [(root, [], os.listdir(root))]
    for folder, dirs, files in walk:
        dirs.sort()
        label = None
        for name in sorted(files):
            path = os.path.join(folder, name)
            if os.path.splitext(name)[1].lower() in exts and os.path.isfile(path):
                if label is None:
                    label = len(folders)
                    folders.append(os.path.relpath(folder, root))
                items.append(ListItem(len(items), os.path.relpath(path, root), (float(label),)))
    return items, folders


def write_list(path, items):
    """Write ``index<TAB>label(s)<TAB>path`` lines (MXNet's ``.lst`` format), atomically."""
    with atomic_open(path) as f:
        for item in items:
            labels = ''.join('%f\t' % x for x in item.labels)
            f.write('%d\t%s%s\n' % (item.index, labels, item.path))


def read_list(path):
    """Read a ``.lst`` file into a list of :class:`ListItem`.

    Raises
    ------
    Im2RecError
        On a malformed line (the message gives the line number).
    """
    items = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = [x.strip() for x in line.rstrip('\n').split('\t')]
            try:
                if len(fields) < 3:
                    raise ValueError('needs index, label(s) and path separated by tabs')
                items.append(ListItem(int(fields[0]), fields[-1],
                                      tuple(float(x) for x in fields[1:-1])))
            except ValueError as exc:
                raise Im2RecError('%s line %d is malformed (%s): %r'
                                  % (path, number, exc, line.rstrip('\n'))) from None
    return items


def make_list(prefix, root, recursive=False, exts=DEFAULT_EXTS, train_ratio=1.0, test_ratio=0.0,
              chunks=1, shuffle=True, seed=100):
    """Write ``.lst`` file(s) for the images under ``root`` (MXNet im2rec ``--list``).

    With ``train_ratio == 1`` the list goes to ``PREFIX.lst``; otherwise to
    ``PREFIX_train.lst``, ``PREFIX_val.lst`` (the rest, when ``train_ratio + test_ratio < 1``)
    and ``PREFIX_test.lst`` (when ``test_ratio > 0``). With ``chunks > 1`` every name gets a
    ``_<chunk>`` suffix after ``PREFIX``. The split sizes follow MXNet's tool:
    ``int(chunk_size * ratio)``.

    Parameters
    ----------
    prefix, root : str
        Output prefix and image folder.
    recursive, exts
        See :func:`list_images`.
    train_ratio, test_ratio : float
        Fractions of each chunk for training and testing.
    chunks : int
        Number of list chunks.
    shuffle : bool
        Shuffle the list with ``random.Random(seed)``; seed 100 gives MXNet's order.
    seed : int
        Shuffle seed.

    Returns
    -------
    (list of str, list of str)
        The ``.lst`` paths written and the folder of each label.

    Raises
    ------
    Im2RecError
        Missing root, no images, bad ratios or an unwritable prefix.
    """
    if not os.path.isdir(root):
        raise Im2RecError('image folder %r does not exist; ROOT must be the folder that holds '
                          'the images (one sub-folder per class with --recursive)' % root)
    if not (0 < train_ratio <= 1 and 0 <= test_ratio < 1 and train_ratio + test_ratio <= 1):
        raise Im2RecError('need 0 < --train-ratio <= 1, 0 <= --test-ratio and their sum <= 1; '
                          'got %g and %g' % (train_ratio, test_ratio))
    if chunks < 1:
        raise Im2RecError('--chunks must be at least 1')
    items, folders = list_images(root, recursive, exts)
    if not items:
        raise Im2RecError('no files ending in %s found in %r%s; check ROOT and --exts'
                          % (' '.join(exts), root, '' if recursive else
                             ' (add --recursive for a folder-per-class tree)'))
    if shuffle:
        random.Random(seed).shuffle(items)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    except OSError as exc:
        raise Im2RecError('cannot create the folder of PREFIX %r (%s)'
                          % (prefix, exc.strerror or exc)) from None
    chunk_size = (len(items) + chunks - 1) // chunks
    written = []
    for c in range(chunks):
        chunk = items[c * chunk_size:(c + 1) * chunk_size]
        stem = prefix + ('_%d' % c if chunks > 1 else '')
        n_train, n_test = int(chunk_size * train_ratio), int(chunk_size * test_ratio)
        if train_ratio == 1.0:
            parts = [(stem + '.lst', chunk)]
        else:
            parts = [(stem + '_train.lst', chunk[n_test:n_test + n_train])]
            if test_ratio:
                parts.append((stem + '_test.lst', chunk[:n_test]))
            if train_ratio + test_ratio < 1.0:
                parts.append((stem + '_val.lst', chunk[n_test + n_train:]))
        for path, part in parts:
            try:
                write_list(path, part)
                if os.path.exists(path[:-4] + '.skipped.tsv'):  # belonged to the old list
                    os.remove(path[:-4] + '.skipped.tsv')
            except OSError as exc:
                raise Im2RecError('cannot write %s (%s); choose a PREFIX in a writable folder'
                                  % (path, exc.strerror or exc)) from None
            written.append(path)
    return written, folders


def find_lists(prefix):
    """Return the ``.lst`` files that belong to ``prefix``, sorted.

    As in MXNet's tool: every ``.lst`` whose path starts with ``prefix`` (all ``.lst`` files in
    it when ``prefix`` is a folder).
    """
    if os.path.isdir(prefix):
        folder, start = prefix, ''
    else:
        folder, start = os.path.dirname(prefix) or '.', os.path.basename(prefix)
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.startswith(start) and name.endswith('.lst')
                  and os.path.isfile(os.path.join(folder, name)))


# ----------------------------------------------------------------------------- records
class _Results:
    """Prepared images in list order, from this process or from a pool of worker processes."""

    def __init__(self, tasks, num_workers):
        self.tasks, self.num_workers, self.pool = tasks, min(num_workers, len(tasks)), None

    def __enter__(self):
        if self.num_workers <= 1:
            return map(prepare_task, self.tasks)
        # spawn: the parent may hold MXNet/DALI/OpenCV threads, which fork does not copy safely
        ctx = multiprocessing.get_context('spawn')
        self.pool = ctx.Pool(self.num_workers, initializer=init_worker)
        chunk = max(1, min(16, len(self.tasks) // (8 * self.num_workers)))
        return self.pool.imap(prepare_task, self.tasks, chunksize=chunk)

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def _say(message, progress):
    if progress:
        tqdm.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def write_record_file(lst_path, root, rec_path=None, idx_path=None, pass_through=False,
                      resize=0, quality=95, center_crop=False, pack_label=False, num_workers=1,
                      progress=True):
    """Write the images of one ``.lst`` file to ``.rec`` + ``.idx`` (MXNet im2rec without --list).

    Records follow the list order; each record's header id and ``.idx`` key is the list
    index, its label the list label (all labels with ``pack_label``). Files that fail to
    decode are reported on stderr and left out; the ``.lst`` is then rewritten without them
    (so it matches the ``.rec``, as ``mx.image.ImageIter`` needs) and they are listed, with
    the reasons, in ``<name>.skipped.tsv``.

    Parameters
    ----------
    lst_path : str
        Input list.
    root : str
        Folder the list's paths are relative to.
    rec_path, idx_path : str, optional
        Outputs; default: ``lst_path`` with ``.rec`` / ``.idx``.
    pass_through : bool
        Keep the bytes of valid 3-channel baseline/progressive JPEGs (other inputs are still
        converted).
    resize : int
        Resize the shorter side to this many pixels when re-encoding (0: keep the size).
    quality : int
        JPEG quality (1-100) of re-encoded images.
    center_crop : bool
        Crop re-encoded images to a centred square first.
    pack_label : bool
        Store every label column of the list (header ``flag`` = number of labels).
    num_workers : int
        Worker processes for decoding/encoding (``--num-thread``); 1 works in-process.
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    WriteResult

    Raises
    ------
    Im2RecError
        Missing root, empty or malformed list, no usable image, conflicting options or an
        unwritable output location. No output file is left behind then.
    """
    base = os.path.splitext(lst_path)[0]
    rec_path = rec_path or base + '.rec'
    idx_path = idx_path or base + '.idx'
    if pass_through and (resize or center_crop):
        raise Im2RecError('--resize/--center-crop re-encode images but --pass-through keeps '
                          'JPEG bytes untouched; drop one of them')
    if not 1 <= quality <= 100:
        raise Im2RecError('--quality must be within 1..100, got %d' % quality)
    if not os.path.isdir(root):
        raise Im2RecError('image folder %r does not exist; ROOT must be the folder the paths '
                          'in %s are relative to' % (root, lst_path))
    items = read_list(lst_path)
    if not items:
        raise Im2RecError('%s lists no images; recreate it with --list' % lst_path)
    options = dict(pass_through=pass_through, resize=resize, quality=quality,
                   center_crop=center_crop)
    tasks = [(os.path.join(root, item.path), options) for item in items]
    try:
        writer = RecordFileWriter(rec_path, idx_path)
    except OSError as exc:
        raise Im2RecError('cannot write %s (%s); choose a writable output folder'
                          % (rec_path, exc.strerror or exc)) from None
    skipped, converted, start = [], 0, time.perf_counter()
    # miniters=1: tqdm's monitor thread then never redraws on its own, so nothing of the bar
    # lands in the stderr capture that in-process decoding uses to catch libjpeg warnings.
    bar = tqdm(total=len(items), desc=os.path.basename(rec_path), unit='img', file=sys.stderr,
               disable=not progress, miniters=1, mininterval=0.2)
    with writer, bar, _Results(tasks, num_workers) as results:
        for item, (status, value) in zip(items, results):
            path = os.path.join(root, item.path)
            if status == 'ok':
                labels = item.labels if pack_label else item.labels[:1]
                writer.write(item.index, pack_image_record(list(labels), item.index, value.data))
                converted += value.converted
                if value.notes:
                    _say('im2rec: note: %s: %s' % (path, value.notes.splitlines()[0]), progress)
            else:
                skipped.append((item, value))
                _say('im2rec: skipped %s: %s' % (path, value), progress)
            bar.update()
        if writer.count == 0:
            raise Im2RecError('none of the %d images in %s could be used (reasons above); '
                              'check ROOT %r' % (len(items), lst_path, root))
        writer.commit()
    if skipped:  # keep the list consistent with the records; the report keeps what was dropped
        dropped = {item.index for item, _ in skipped}
        write_list(lst_path, [item for item in items if item.index not in dropped])
        _write_skipped(base + '.skipped.tsv', skipped)
    return WriteResult(rec_path, idx_path, writer.count, converted, skipped,
                       time.perf_counter() - start)


def _write_skipped(path, skipped):
    with open(path, 'w') as f:
        f.write('index\tpath\treason\n')
        for item, reason in skipped:
            f.write('%d\t%s\t%s\n' % (item.index, item.path, reason))


# ----------------------------------------------------------------------------- CLI
def parse_args(argv=None):
    """Parse the command line (MXNet im2rec's flags plus ``--index-only``)."""
    parser = argparse.ArgumentParser(
        prog='python -m data.im2rec', formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Create image lists (--list), or RecordIO .rec/.idx files from every '
                    'PREFIX*.lst,\nor rebuild a missing .idx (--index-only), or find the '
                    'records of a .rec that do not\ndecode (--check) and leave them out of '
                    'its .idx (--repair).',
        epilog='examples:\n'
               '  python -m data.im2rec --list --recursive train /data/raw/train\n'
               '  python -m data.im2rec --pass-through --num-thread 8 train /data/raw/train\n'
               '  python -m data.im2rec --index-only train\n'
               '  python -m data.im2rec --check /data/imagenet/train.rec --repair\n\n'
               '--check exits with status 1 when it finds a bad record (status 0: none).')
    parser.add_argument('prefix', help='prefix of the .lst/.rec/.idx files (a folder: all .lst '
                        'files in it)')
    parser.add_argument('root', nargs='?', help='folder with the images; the .lst paths are '
                        'relative to it (not needed with --index-only or --check)')
    g = parser.add_argument_group('creating image lists')
    g.add_argument('--list', action='store_true', help='walk ROOT and write PREFIX*.lst instead '
                   'of record files')
    g.add_argument('--exts', nargs='+', default=list(DEFAULT_EXTS),
                   help='accepted file extensions, case-insensitive; give this option after '
                   'PREFIX ROOT (default: %s)' % ' '.join(DEFAULT_EXTS))
    g.add_argument('--recursive', action='store_true', help='walk sub-folders; label = index of '
                   'the folder in sorted order (class-per-folder trees); otherwise only files '
                   'in ROOT, label 0')
    g.add_argument('--train-ratio', type=float, default=1.0, help='fraction for '
                   'PREFIX_train.lst; below 1 the rest goes to PREFIX_val.lst (default: '
                   '%(default)s: everything in PREFIX.lst)')
    g.add_argument('--test-ratio', type=float, default=0.0, help='fraction for PREFIX_test.lst '
                   '(default: %(default)s)')
    g.add_argument('--chunks', type=int, default=1, help='split the list into this many chunks, '
                   'PREFIX_<i>*.lst (default: %(default)s)')
    g.add_argument('--shuffle', action=argparse.BooleanOptionalAction, default=True,
                   help='shuffle the list, seeded: the same input gives the same list '
                   '(default: shuffle)')
    g.add_argument('--seed', type=int, default=100, help='shuffle seed; 100 gives the order of '
                   "MXNet's tool (default: %(default)s)")
    g = parser.add_argument_group('creating record files')
    g.add_argument('--pass-through', action='store_true', help='keep the bytes of valid '
                   '3-channel baseline/progressive JPEGs (still decoded once to validate); '
                   'other files are converted to JPEG')
    g.add_argument('--resize', type=int, default=0, help='resize the shorter side to this many '
                   'pixels when re-encoding (default: 0, keep the size)')
    g.add_argument('--center-crop', action='store_true', help='crop re-encoded images to a '
                   'centred square')
    g.add_argument('--quality', type=int, default=95, help='JPEG quality of re-encoded images, '
                   '1-100 (default: %(default)s)')
    g.add_argument('--num-thread', type=int, default=None, help='worker processes for decoding '
                   'and encoding; the output is the same for any number (default: 1); with '
                   '--check, decoding threads (default: every core)')
    g.add_argument('--pack-label', action='store_true', help='store all label columns of the '
                   '.lst, not only the first')
    g.add_argument('--index-only', action='store_true', help='rebuild PREFIX.idx from an existing '
                   'PREFIX.rec (DALI needs the .idx)')
    g.add_argument('--no-progress', dest='progress', action='store_false',
                   help='no progress bar')
    g = parser.add_argument_group('checking existing record files')
    g.add_argument('--check', action='store_true', help='decode every record of PREFIX.rec '
                   'as DALI and ImageRecordIter do and report each bad one by key, offset and '
                   'reason (a missing .idx is rebuilt first)')
    g.add_argument('--repair', action='store_true', help='with --check: write a new PREFIX.idx '
                   'without the bad records (the old one is kept as PREFIX.idx.orig); DALI '
                   'and mx.recordio then never read them. The .rec is not rewritten')
    g.add_argument('--compact', metavar='OUT_PREFIX', help='with --check: also copy the good '
                   'records to OUT_PREFIX.rec/.idx. Only --data-backend mxnet needs it: '
                   'ImageRecordIter reads every byte between two index entries, so it still '
                   'decodes records an index leaves out')
    args = parser.parse_args(argv)
    if (args.repair or args.compact) and not args.check:
        parser.error('--repair and --compact go with --check')
    if args.root is None and not (args.index_only or args.check):
        parser.error('ROOT is required (the folder with the images)')
    if args.num_thread is not None and args.num_thread < 1:
        parser.error('--num-thread must be at least 1')
    return args


def _index_only(prefix):
    rec = prefix if prefix.endswith('.rec') else prefix + '.rec'
    if not os.path.isfile(rec):
        raise Im2RecError('%s does not exist; --index-only needs the .rec file (give PREFIX '
                          'or PREFIX.rec)' % rec)
    try:
        count = build_index(rec)
    except ValueError as exc:
        raise Im2RecError('%s is damaged: %s; recreate it' % (rec, exc)) from None
    except OSError as exc:
        raise Im2RecError('cannot write the index next to %s (%s)' % (rec, exc.strerror)) from None
    print('im2rec: indexed %d records of %s in %s'
          % (count, rec, os.path.splitext(rec)[0] + '.idx'))


def _check(args):
    """--check [--repair] [--compact]: returns the exit status (1 when a record is bad)."""
    rec = args.prefix if args.prefix.endswith('.rec') else args.prefix + '.rec'
    idx = os.path.splitext(rec)[0] + '.idx'
    if not os.path.isfile(rec):
        raise Im2RecError('%s does not exist; --check needs the .rec file (give PREFIX or '
                          'PREFIX.rec)' % rec)
    if not os.path.isfile(idx):
        print('im2rec: %s has no index; rebuilding %s first' % (rec, idx))
        _index_only(rec)
    try:
        entries = record_check.read_entries(idx)
    except ValueError as exc:
        raise Im2RecError(str(exc)) from None
    start = time.perf_counter()
    bad = record_check.check_records(rec, entries, args.num_thread, args.progress)
    seconds = time.perf_counter() - start
    for line in record_check.describe_bad(bad):
        print('im2rec: bad record in %s: %s' % (rec, line))
    print('im2rec: checked %d records of %s in %.1f s (%.0f records/s): %d bad'
          % (len(entries), rec, seconds, len(entries) / max(seconds, 1e-9), len(bad)))
    try:
        _repair(args, rec, idx, entries, bad)
    except OSError as exc:
        raise Im2RecError('cannot write next to %s (%s); the old files are unchanged'
                          % (rec, exc.strerror or exc)) from None
    return 1 if bad else 0


def _repair(args, rec, idx, entries, bad):
    if args.repair and bad:
        kept, original = record_check.repair_index(idx, entries, bad)
        print('im2rec: wrote %s with %d of %d records (the bad ones left out); the previous '
              'index is %s' % (idx, kept, len(entries), original))
    elif bad:
        print('im2rec: to leave them out of the index: %s' % record_check.repair_command(rec))
    if args.compact:
        left_out = {(b.key, b.offset) for b in bad}
        count = record_check.compact_records(
            rec, [e for e in entries if e not in left_out], os.path.abspath(args.compact),
            args.progress)
        print('im2rec: copied %d good records to %s.rec (+ .idx)' % (count, args.compact))


def _write_records(args):
    if not os.path.isdir(args.root):
        raise Im2RecError('image folder %r does not exist; ROOT must be the folder the paths '
                          'in the .lst files are relative to' % args.root)
    lists = find_lists(args.prefix)
    if not lists:
        raise Im2RecError('no .lst file matches %r; create one first with: python -m data.im2rec '
                          '--list --recursive %s %s' % (args.prefix, args.prefix, args.root))
    for lst in lists:
        result = write_record_file(
            lst, args.root, pass_through=args.pass_through, resize=args.resize,
            quality=args.quality, center_crop=args.center_crop, pack_label=args.pack_label,
            num_workers=args.num_thread or 1, progress=args.progress)
        n = result.written + len(result.skipped)
        print('im2rec: %s: wrote %d of %d images to %s (+ .idx), %d re-encoded, %d passed '
              'through; skipped %d%s; %.1f s, %.0f images/s'
              % (os.path.basename(lst), result.written, n, result.rec_path, result.converted,
                 result.written - result.converted, len(result.skipped),
                 ' (removed from the .lst, listed in %s)'
                 % (os.path.splitext(lst)[0] + '.skipped.tsv')
                 if result.skipped else '', result.seconds, n / max(result.seconds, 1e-9)))


def main(argv=None):
    """Command-line entry point; returns the exit status."""
    args = parse_args(argv)
    args.prefix = os.path.abspath(args.prefix)
    args.root = args.root and os.path.abspath(args.root)
    try:
        if args.check:
            return _check(args)
        if args.index_only:
            _index_only(args.prefix)
        elif args.list:
            paths, folders = make_list(args.prefix, args.root, args.recursive, args.exts,
                                       args.train_ratio, args.test_ratio, args.chunks,
                                       args.shuffle, args.seed)
            for label, folder in enumerate(folders):
                print('%d\t%s' % (label, folder))
            print('im2rec: %d classes; wrote %s' % (len(folders), ', '.join(paths)))
        else:
            _write_records(args)
    except Im2RecError as exc:
        print('im2rec: error: %s' % exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('im2rec: interrupted; no partial .rec was left behind', file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())
