"""Check a COCO-layout data root before training on it: ``python -m data.coco_check ROOT``.

For each split: the annotation file is valid JSON with COCO's structure and well-formed
entries (the checks `data.coco` makes before training: image entries, categories, boxes),
every image it lists exists, and every image decodes as DALI and OpenCV decode it
(`data.decode_check`; a truncated JPEG, for one, does not). Every problem is reported, by
file name; the exit status is 1 when there is one.
"""
import argparse
import os
import sys
import time

from tqdm import tqdm

from data.coco import (CocoError, _missing_files, coco_split_paths, load_annotations,
                       normalize_annotations)
from data.decode_check import BATCH, DecodeChecker

__all__ = ['check_coco_split', 'check_command', 'main', 'undecodable_images']

DEFAULT_SPLITS = ('train2017', 'val2017')


def check_coco_split(root, split, sample=0, num_threads=None, progress=False):
    """The problems of one split of a COCO root, as a list of lines (empty: none).

    Parameters
    ----------
    root, split : str
        As in `data.coco.coco_split_paths`.
    sample : int
        Decode this many of the listed images, spread over the list (0: all).
    num_threads : int, optional
        Decoding threads (default: every core).
    progress : bool
        A tqdm bar on stderr.

    Raises
    ------
    CocoError
        When the folder layout or the annotation file itself cannot be used (missing,
        cut short, not COCO, malformed entries); the message names the file and the fault.
    """
    annotation_file, image_dir = coco_split_paths(root, split)
    doc = load_annotations(annotation_file)
    normalize_annotations(doc, annotation_file)  # raises on malformed images, categories, boxes
    problems = ['%s: missing image (listed in %s)' % (os.path.join(image_dir, name),
                                                      annotation_file)
                for name in _missing_files(doc['images'], image_dir)]
    names = [image['file_name'] for image in doc['images']
             if os.path.isfile(os.path.join(image_dir, image['file_name']))]
    if 0 < sample < len(names):
        names = [names[i * len(names) // sample] for i in range(sample)]
    return problems + ['%s: %s' % (os.path.join(image_dir, name), reason)
                       for name, reason in undecodable_images(image_dir, names, num_threads,
                                                              progress, desc=split)]


def check_command(image_dir):
    """The command that checks the split whose images are in `image_dir` (ROOT/SPLIT)."""
    root, split = os.path.split(os.path.normpath(image_dir))
    return f"python -m data.coco_check {root} --splits {split}"


def undecodable_images(image_dir, names, num_threads=None, progress=False, desc=None):
    """``[(name, reason)]`` of the files `names` of `image_dir` that do not decode as DALI
    and OpenCV decode them (`data.decode_check`); a missing file is one too."""
    bad = []
    bar = tqdm(total=len(names), desc=desc, unit='img', file=sys.stderr,
               disable=not progress, mininterval=0.5)
    with DecodeChecker(num_threads) as checker, bar:
        for start in range(0, len(names), 4 * BATCH):
            chunk = names[start:start + 4 * BATCH]
            images = []
            for name in chunk:
                path = os.path.join(image_dir, name)
                if not os.path.isfile(path):
                    bad.append((name, 'missing file'))
                    continue
                with open(path, 'rb') as f:
                    images.append((name, f.read()))
            reasons = checker.check([data for _, data in images])
            bad += [(name, reason) for (name, _), reason in zip(images, reasons) if reason]
            bar.update(len(chunk))
    return bad


def main(argv=None):
    """Command-line entry point; returns the exit status (1: a problem was found)."""
    parser = argparse.ArgumentParser(
        prog='python -m data.coco_check', description='Check that the COCO json of each split '
        'is whole and well-formed, and that every image it lists exists and decodes.')
    parser.add_argument('root', help='COCO-layout folder (annotations/instances_SPLIT.json, '
                        'SPLIT/)')
    parser.add_argument('--splits', nargs='+', default=list(DEFAULT_SPLITS),
                        help='splits to check (default: %(default)s)')
    parser.add_argument('--num-threads', type=int, default=None,
                        help='decoding threads (default: every core)')
    parser.add_argument('--no-progress', dest='progress', action='store_false')
    args = parser.parse_args(argv)
    failed = False
    for split in args.splits:
        start = time.perf_counter()
        try:
            problems = check_coco_split(args.root, split, 0, args.num_threads, args.progress)
        except CocoError as error:
            print('coco_check: error: %s' % error, file=sys.stderr)
            failed = True
            continue
        for line in problems:
            print('coco_check: %s' % line)
        print('coco_check: %s: %d problem(s) (%.1f s)'
              % (split, len(problems), time.perf_counter() - start))
        failed = failed or bool(problems)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
