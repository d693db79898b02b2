"""Turn a hang between workers into an error that says where each worker was waiting.

A collective (allreduce, broadcast, gather) returns only when every worker has joined it. A
worker that never joins (it took another branch, issued another collective, or hangs) leaves
the others waiting forever; Horovod's own stall inspector stays silent in Gloo runs of this
Horovod build (checked: no warning after 80 s of a deliberate mismatch). So the engine wraps
every wait on other workers in `StallWatchdog.waiting(name)`. A wait longer than a tenth of
the bound is noted in the run's status folder (when the launcher gave one), so that the
launcher can say which worker waited where; a wait longer than the bound ends this worker
with `EXIT_STALLED` after logging the collective's name.
"""
import json
import logging
import os
import sys
import threading
import time
from contextlib import contextmanager

log = logging.getLogger(__name__)

EXIT_STALLED = 75
STATUS_DIR_ENV = "RUNNER_STATUS_DIR"


class StallWatchdog:
    """A background thread that ends the process when one wait lasts over `timeout` seconds.

    Parameters
    ----------
    rank : int
        This worker's rank, for the messages.
    timeout : float
        Seconds one wait may last; 0 or less disables the watchdog.
    status_dir : str, optional
        Folder where long waits are noted as ``rank-N.json`` for the launcher.
    """

    def __init__(self, rank, timeout, status_dir=None):
        self.rank = rank
        self.timeout = float(timeout)
        self.status_dir = status_dir
        self._lock = threading.Lock()
        self._waits = {}  # token -> (what, start)
        self._next_token = 0
        self._status_noted = False  # a status file of this worker exists
        if self.timeout > 0:
            threading.Thread(target=self._watch, name="stall-watchdog", daemon=True).start()

    @contextmanager
    def waiting(self, what):
        """Mark the enclosed code as waiting on the other workers in the collective `what`."""
        if self.timeout <= 0:
            yield
            return
        with self._lock:
            token = self._next_token
            self._next_token += 1
            self._waits[token] = (what, time.monotonic())
        try:
            yield
        finally:
            with self._lock:
                del self._waits[token]
            if self._status_noted:  # a file system call only after a long wait, not per step
                self._write_status(None)

    def _oldest_wait(self):
        with self._lock:
            if not self._waits:
                return None, 0.0
            what, start = min(self._waits.values(), key=lambda wait: wait[1])
        return what, time.monotonic() - start

    def _watch(self):
        period = min(1.0, self.timeout / 20)
        noted = None
        while True:
            time.sleep(period)
            what, seconds = self._oldest_wait()
            if what is not None and seconds > self.timeout / 10 and noted != what:
                self._write_status({"rank": self.rank, "waiting": what, "since": time.time() -
                                    seconds})
                noted = what
            elif what is None:
                noted = None
            if what is not None and seconds > self.timeout:
                log.error("worker %d has waited %.0f s for the other workers in collective "
                          "%r (--stall-timeout %g): stopping", self.rank, seconds, what,
                          self.timeout)
                for handler in logging.getLogger().handlers:
                    handler.flush()
                sys.stderr.flush()
                os._exit(EXIT_STALLED)

    def _write_status(self, status):
        if not self.status_dir:
            return
        path = os.path.join(self.status_dir, f"rank-{self.rank}.json")
        try:
            if status is None:
                self._status_noted = False
                if os.path.exists(path):
                    os.remove(path)
                return
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                json.dump(status, f)
            os.replace(tmp, path)
            self._status_noted = True
        except OSError:
            pass  # the status is a courtesy for the launcher's message, never a reason to fail


def read_statuses(status_dir, num_workers):
    """What each rank was waiting on when it last noted a long wait: {rank: (what, since)}."""
    statuses = {}
    for rank in range(num_workers):
        try:
            with open(os.path.join(status_dir, f"rank-{rank}.json")) as f:
                status = json.load(f)
            statuses[rank] = (status["waiting"], status["since"])
        except (OSError, ValueError, KeyError):
            continue
    return statuses
