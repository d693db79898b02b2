"""What a worker does when its DALI pipeline fails on a record of a ``.rec``: `--bad-data`.

DALI cannot skip a sample that fails to decode: a failed batch ends the pipeline ("Current
pipeline object is no longer valid"), and its readers cannot be asked for a replacement
sample. So the worker finds the bad records itself, with the checker of
``python -m data.im2rec --check``, in the shard it was reading (DALI moves every worker to
the next shard after each pass; the whole file is checked when the shard holds none), and

- ``stop``: raises `data.files.DataError` naming the file, each record's key and offset,
  and the repair command. The worker exits with status 2 and the launcher stops the others
  at once (a worker that stops never leaves the others waiting in an allreduce for long);
- ``skip`` (the default): leaves them out and carries on. From then on each pass of this
  worker runs a pipeline of its own over that pass's shard without the bad records (an
  index of one shard in a temporary folder, read as one shard), so that no record changes
  worker and no other worker is involved. `data.loaders.DALILoader` keeps every pass as long
  as before (the batches it had already given are read again and dropped, a short training
  pass is made up with its last batch), so every worker still takes the same number of steps.

The records left out are part of the loader's checkpoint state: ``--resume`` rebuilds the
same pipelines instead of meeting the bad records again.

COCO training data (`CocoImageRecovery`) works the same way with image files instead of
records, except for what is checked and read: DALI does not say which image failed, and
which images a worker reads in a pass follows the COCO reader's own filtering and order, so
the whole split is checked, and the worker goes on reading a copy of the normalised
annotation file without the bad images, in the shard it would have read.
"""
import json
import logging
import os
import tempfile

from data.files import DataError
from data.record_check import check_records, describe_bad, read_entries, repair_command
from data.recordio import records_left_out

log = logging.getLogger(__name__)

POLICIES = ("skip", "stop")


class RecordShardRecovery:
    """The records one worker leaves out of a ``.rec``, and the pipelines that do so.

    Parameters
    ----------
    rec, idx : str
        The record file and its index.
    make_pipeline : callable
        ``make_pipeline(idx_path, shard_id, num_shards, pass_index, checkpoint)``: the
        worker's pipeline over `idx_path` (the pass index varies the shuffle of each pass).
    rank, num_shards : int
        The worker's first shard, and the number of workers.
    policy : str
        "skip" or "stop".
    num_threads : int
        Threads for checking records.
    excluded : iterable of (int, int), optional
        ``(key, offset)`` of records already left out (from a checkpoint).
    """

    def __init__(self, rec, idx, make_pipeline, rank, num_shards, policy, num_threads,
                 excluded=()):
        self.rec, self.idx = rec, idx
        self.make_pipeline = make_pipeline
        self.rank, self.num_shards = rank, num_shards
        self.policy = policy
        self.num_threads = num_threads
        self.excluded = {tuple(entry) for entry in excluded}
        self._entries = None
        self._folder = None

    @property
    def entries(self):
        if self._entries is None:
            self._entries = read_entries(self.idx)
        return self._entries

    def shard(self, pass_index):
        """The index of the shard DALI reads in pass `pass_index` of this worker."""
        return (self.rank + pass_index) % self.num_shards

    def shard_entries(self, pass_index):
        """The ``(key, offset)`` entries of that shard, split as DALI splits the index."""
        n, s = len(self.entries), self.shard(pass_index)
        return self.entries[n * s // self.num_shards:n * (s + 1) // self.num_shards]

    def skipped(self, pass_index):
        """Records of the shard of pass `pass_index` that this worker leaves out."""
        return sum(1 for entry in self.shard_entries(pass_index) if entry in self.excluded)

    def handle_failure(self, error, pass_index):
        """Find the bad records after DALI's `error` in pass `pass_index`; under ``skip``
        remember them (then `pipeline` leaves them out), under ``stop`` raise.

        Raises
        ------
        DataError
            Under ``stop``, naming the records.
        RuntimeError
            `error` itself, when no record of the file fails to decode here.
        """
        log.warning("worker %d: DALI failed to decode a sample of %s; checking the %d "
                    "records of the shard it was reading", self.rank, self.rec,
                    len(self.shard_entries(pass_index)))
        bad = check_records(self.rec, self.shard_entries(pass_index), self.num_threads)
        if not bad:  # DALI reads ahead: the failed batch may be of the next pass already
            bad = check_records(self.rec, self.entries, self.num_threads)
        bad = [b for b in bad if (b.key, b.offset) not in self.excluded]
        if not bad:
            raise error
        listed = "; ".join(describe_bad(bad))
        if self.policy == "stop":
            raise DataError(
                f"{len(bad)} record(s) of {self.rec} cannot be decoded: {listed}. Leave them "
                f"out of the index with `{repair_command(self.rec)}` (the .rec is not "
                f"rewritten), then resume; or train with --bad-data skip, which leaves them "
                f"out as they are met")
        self.excluded.update((b.key, b.offset) for b in bad)
        log.warning("worker %d: leaving out %d bad record(s) of %s and carrying on "
                    "(--bad-data skip): %s. To fix the file for good: %s", self.rank,
                    len(bad), self.rec, listed, repair_command(self.rec))

    def pipeline(self, pass_index, checkpoint=None):
        """The pipeline of pass `pass_index`: its shard without the excluded records, as
        one shard."""
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="bad-records-")
        path = os.path.join(self._folder.name, f"shard-{self.shard(pass_index)}.idx")
        kept = [e for e in self.shard_entries(pass_index) if e not in self.excluded]
        if not kept:
            raise DataError(f"no record of shard {self.shard(pass_index)} of {self.rec} "
                                f"decodes; check the file with `{repair_command(self.rec)}`")
        with open(path, "w") as f:
            f.writelines(f"{key}\t{offset}\n" for key, offset in kept)
        return self.make_pipeline(path, 0, 1, pass_index, checkpoint)

    def state(self):
        return sorted(self.excluded)


class CocoImageRecovery:
    """The images of a COCO training split one worker leaves out after DALI failed on one,
    and the pipelines that do so (the `DALILoader` recovery of `data.coco_loaders`).

    The worker's pipelines read a copy of the normalised annotation file without the bad
    images, sharded as the original: the other workers still read the original, so the
    shards move by at most the number of images left out before them, and an epoch may see
    a few images twice or not at all (the epoch's length stays the same on every worker).

    Parameters
    ----------
    dataset : data.coco.CocoDataset
        The normalised training split.
    make_pipeline : callable
        ``make_pipeline(annotations_file, shard_id, pass_index, checkpoint)``: the worker's
        pipeline over that file.
    rank, num_shards : int
    policy : str
        "skip" or "stop".
    num_threads : int
        Threads for checking images.
    excluded : iterable of str, optional
        File names already left out (from a checkpoint).
    """

    def __init__(self, dataset, make_pipeline, rank, num_shards, policy, num_threads,
                 excluded=()):
        self.dataset = dataset
        self.make_pipeline = make_pipeline
        self.rank, self.num_shards = rank, num_shards
        self.policy, self.num_threads = policy, num_threads
        self.excluded = set(excluded)
        self._folder = None
        self._written = None  # the excluded names the annotation copy leaves out

    @property
    def check_command(self):
        from data.coco_check import check_command
        return check_command(self.dataset.image_dir)

    def skipped(self, pass_index):
        """Images of the split this worker leaves out (which of them fall in a pass's shard
        is the reader's business)."""
        return len(self.excluded)

    def handle_failure(self, error, pass_index):
        """Find the split's undecodable images after DALI's `error`; under ``skip`` remember
        them, under ``stop`` raise a DataError naming them (as RecordShardRecovery)."""
        from data.coco_check import undecodable_images
        with open(self.dataset.annotation_file) as f:
            names = [image["file_name"] for image in json.load(f)["images"]]
        log.warning("worker %d: DALI failed to decode an image of %s; checking its %d "
                    "images", self.rank, self.dataset.image_dir, len(names))
        bad = [(name, reason) for name, reason in
               undecodable_images(self.dataset.image_dir, names, self.num_threads)
               if name not in self.excluded]
        if not bad:
            raise error
        listed = "; ".join(f"{os.path.join(self.dataset.image_dir, name)}: {reason}"
                           for name, reason in bad)
        if self.policy == "stop":
            raise DataError(f"{len(bad)} image(s) cannot be decoded: {listed}. Replace or "
                            f"remove them (`{self.check_command}` checks the split), then "
                            f"resume; or train with --bad-data skip, which leaves them out")
        self.excluded.update(name for name, _ in bad)
        log.warning("worker %d: leaving out %d bad image(s) and carrying on (--bad-data "
                    "skip): %s. To fix the data set for good, replace or remove them "
                    "(`%s` checks it)", self.rank, len(bad), listed, self.check_command)

    def pipeline(self, pass_index, checkpoint=None):
        """The pipeline of pass `pass_index`: the annotation file without the excluded
        images, in the shard DALI moves this worker to after each pass."""
        if self._folder is None:
            self._folder = tempfile.TemporaryDirectory(prefix="bad-images-")
        if self._written != self.excluded:  # images found bad since the copy was written
            self._write_annotations()
        return self.make_pipeline(os.path.join(self._folder.name, "annotations.json"),
                                  (self.rank + pass_index) % self.num_shards, pass_index,
                                  checkpoint)

    def _write_annotations(self):
        with open(self.dataset.annotation_file) as f:
            doc = json.load(f)
        kept = {image["id"] for image in doc["images"]
                if image["file_name"] not in self.excluded}
        doc["images"] = [image for image in doc["images"] if image["id"] in kept]
        doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in kept]
        with open(os.path.join(self._folder.name, "annotations.json"), "w") as f:
            json.dump(doc, f)
        self._written = set(self.excluded)

    def state(self):
        return sorted(self.excluded)


# ----------------------------------------------------------------------------- ImageRecordIter
# `mx.io.ImageRecordIter` (--data-backend mxnet) has no way to skip a record, and it reads
# every byte from one index offset to the next (dmlc-core's indexed splitter), so an index
# that leaves records out does not hide them from it. Its bad records stop the run, named.

def check_index_covers_file(rec, idx):
    """Raise DataError when `idx` leaves records of `rec` out (e.g. after --repair), which
    ImageRecordIter would still decode."""
    left_out = records_left_out(rec, [offset for _, offset in read_entries(idx)])
    if left_out:
        raise DataError(
            f"{idx} leaves out {left_out} record(s) of {rec} (as `--check --repair` does); "
            f"ImageRecordIter (--data-backend mxnet) reads every byte between two index "
            f"entries and would still decode them. Train with --data-backend dali-cpu or "
            f"dali-gpu, which read exactly the records the index lists, or write a copy "
            f"without them: python -m data.im2rec --check {rec} --compact NEW_PREFIX")


def image_record_iter_failure(rec, idx, num_threads):
    """The message for ImageRecordIter failing on `rec`: the bad records (the whole file is
    checked) and what to do."""
    bad = check_records(rec, read_entries(idx), num_threads)
    found = ("; ".join(describe_bad(bad)) if bad else
             "no record fails to decode here; its error is above")
    return (f"ImageRecordIter (--data-backend mxnet) failed on {rec}, and it cannot skip "
            f"a record: {found}. Leave the bad records out with `{repair_command(rec)}` "
            f"and train with --data-backend dali-cpu or dali-gpu (which skip or stop as "
            f"--bad-data says), or add --compact NEW_PREFIX to that command for a copy "
            f"that ImageRecordIter can read")
