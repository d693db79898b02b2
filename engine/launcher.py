"""Start the workers of a one-machine run and watch them until they end.

horovodrun would do the same, but its rendezvous server listens on every network interface of
the machine for as long as the run lasts, and when a worker dies it prints a traceback of its own
instead of saying what happened. This launcher serves Horovod's rendezvous (the same HTTP server,
`horovod.runner.http.http_server`) on 127.0.0.1 only, pins Gloo's TCP transport to the loopback
interface, prefixes each worker's output lines as horovodrun does (``[1]<stdout>:``), and when
one worker fails, stops the others and returns who failed and how. Runs over several machines
still go through horovodrun (see `runner`).
"""
import argparse
import codecs
import contextlib
import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import tempfile
from dataclasses import dataclass, field

LOOPBACK_ADDRESS, LOOPBACK_INTERFACE = "127.0.0.1", "lo"
GLOO_TIMEOUT_ENV = "HOROVOD_GLOO_TIMEOUT_SECONDS"
# How long the other workers get to exit on SIGTERM after one failed, before SIGKILL.
STOP_GRACE_SECONDS = 10
# How long, after a worker failed, the others get to fail in consequence before being stopped.
FOLLOWER_SECONDS = 3
HOROVOD_SHUT_DOWN = "Horovod has been shut down"
PR_SET_PDEATHSIG = 1


@dataclass
class WorkerExit:
    """How the first failing worker ended: its rank and exit status (negative: killed by that
    signal), and what each worker was waiting on at the time ({rank: collective name}, for the
    workers that were in a long wait)."""
    rank: int
    returncode: int
    waits: dict = field(default_factory=dict)

    @property
    def exit_status(self):
        """The status a shell would report: 128 + N for death by signal N."""
        return self.returncode if self.returncode > 0 else 128 - self.returncode


def explain(failure, num_workers):
    """Lines that say which worker ended the run, how, and where each worker was waiting."""
    from engine.watchdog import EXIT_STALLED
    lines = [f"worker {failure.rank} {describe_exit(failure.returncode)}; the other workers "
             f"were stopped"]
    for rank in range(num_workers):
        if rank in failure.waits:
            lines.append(f"  worker {rank} was waiting in collective {failure.waits[rank]!r}")
        elif failure.returncode == EXIT_STALLED:
            lines.append(f"  worker {rank} was not waiting on a collective (busy elsewhere, "
                         f"hung, or gone ahead in another branch)")
    return lines


def signal_name(returncode):
    """The signal behind an exit status, or None: -9 (Popen) and 137 (a shell's 128 + 9) are
    both SIGKILL."""
    number = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else None
    try:
        return signal.Signals(number).name if number else None
    except ValueError:
        return None


def describe_exit(returncode):
    """An exit status in words, with the usual reason for it."""
    from engine.loop import EXIT_DIVERGED
    from engine.watchdog import EXIT_STALLED
    name = signal_name(returncode)
    if returncode == EXIT_STALLED:
        return ("stopped after waiting on the other workers for longer than --stall-timeout "
                "(its message above names the collective)")
    if name == "SIGKILL":
        return ("was killed (SIGKILL); when nobody killed it by hand, this is most often the "
                "kernel's out-of-memory killer (see `dmesg`)")
    if name == "SIGTERM":
        return "was terminated (SIGTERM), e.g. by the job scheduler or a time limit"
    if name == "SIGINT":
        return "was interrupted (SIGINT, Ctrl-C)"
    if name:
        return f"died of signal {name}"
    if returncode == 2:
        return "stopped with exit status 2 (a usage or data error; its message is above)"
    if returncode == EXIT_DIVERGED:
        return (f"stopped with exit status {EXIT_DIVERGED}: training diverged (the loss became "
                f"NaN or infinite; its message above says what to change)")
    return f"stopped with exit status {returncode} (its error is above)"


def worker_environment(base_env, rank, num_workers, port, extra_env):
    """The environment of worker `rank`: what horovodrun would set for a one-host Gloo run,
    on loopback."""
    env = dict(base_env, PYTHONUNBUFFERED="1", **extra_env)
    env.update({
        "HOROVOD_HOSTNAME": "localhost", "HOROVOD_RANK": str(rank),
        "HOROVOD_SIZE": str(num_workers), "HOROVOD_LOCAL_RANK": str(rank),
        "HOROVOD_LOCAL_SIZE": str(num_workers), "HOROVOD_CROSS_RANK": "0",
        "HOROVOD_CROSS_SIZE": "1",
        "HOROVOD_CONTROLLER": "gloo", "HOROVOD_CPU_OPERATIONS": "gloo",
        "HOROVOD_GLOO_RENDEZVOUS_ADDR": LOOPBACK_ADDRESS,
        "HOROVOD_GLOO_RENDEZVOUS_PORT": str(port),
        "HOROVOD_GLOO_IFACE": LOOPBACK_INTERFACE,
    })
    return env


def _rendezvous_server(num_workers):
    """Horovod's rendezvous HTTP server bound to 127.0.0.1 on a free port, serving."""
    from horovod.runner.common.util.hosts import get_host_assignments, parse_hosts
    from horovod.runner.http.http_server import RendezvousHandler, RendezvousHTTPServer
    server = RendezvousHTTPServer((LOOPBACK_ADDRESS, 0), RendezvousHandler, 0)
    server.init(get_host_assignments(parse_hosts(f"localhost:{num_workers}"), num_workers))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _forward(stream, prefix, out, on_line=None):
    """Copy a worker's output to `out`, each line prefixed. Only whole lines are written (a
    carriage return, as progress bars print, also ends one), so that the lines of several
    workers never mix. `on_line(text)` sees each chunk of whole lines."""
    pending = ""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    for chunk in iter(lambda: stream.read1(1 << 16), b""):
        pieces = (pending + decoder.decode(chunk)).splitlines(keepends=True)
        if not pieces:
            continue
        pending = pieces.pop() if not pieces[-1].endswith(("\n", "\r")) else ""
        if pieces:
            if on_line is not None:
                on_line("".join(pieces))
            out.write("".join(prefix + piece for piece in pieces))
            out.flush()
    if pending:
        out.write(prefix + pending + "\n")
        out.flush()


def run_workers(command, num_workers, extra_env=None):
    """Run `command` as `num_workers` Horovod workers on this machine.

    Parameters
    ----------
    command : list of str
        The worker command line (the same for every rank).
    num_workers : int
    extra_env : dict, optional
        Variables added to every worker's environment (e.g. Horovod's stall settings).

    Returns
    -------
    WorkerExit or None
        The worker whose failure ended the run (the others were then stopped), or None when
        every worker exited with status 0.
    """
    with tempfile.TemporaryDirectory(prefix="launcher-status-") as status_dir, \
            _sigterm_as_exit():
        return _run_and_watch(command, num_workers, extra_env, status_dir)


@contextlib.contextmanager
def _sigterm_as_exit():
    """SIGTERM raises SystemExit while the workers run, so that a launcher stopped by it
    (a job scheduler, a test's timeout) stops its workers and removes its status folder."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def leave(signum, frame):
        raise SystemExit(128 + signum)
    previous = signal.signal(signal.SIGTERM, leave)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_and_watch(command, num_workers, extra_env, status_dir):
    from engine.watchdog import STATUS_DIR_ENV, read_statuses
    extra_env = dict(extra_env or {}, **{STATUS_DIR_ENV: status_dir})
    server = _rendezvous_server(num_workers)
    port = server.server_address[1]
    workers, forwarders, followers = [], [], set()

    def watch_for_shutdown(rank):
        def on_line(text):
            if HOROVOD_SHUT_DOWN in text:
                followers.add(rank)
        return on_line

    try:
        for rank in range(num_workers):
            env = worker_environment(os.environ, rank, num_workers, port, extra_env)
            process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
            workers.append(process)
            for stream, name, out in ((process.stdout, "stdout", sys.stdout),
                                      (process.stderr, "stderr", sys.stderr)):
                thread = threading.Thread(target=_forward, daemon=True,
                                          args=(stream, f"[{rank}]<{name}>:", out,
                                                watch_for_shutdown(rank)))
                thread.start()
                forwarders.append(thread)
        failure = _wait_for_workers(workers, followers)
    except BaseException:  # Ctrl-C or a launch error: never leave workers behind
        _stop(workers)
        raise
    finally:
        server.shutdown()
        server.server_close()
    if failure is not None:
        _stop(workers)
        failure.waits = {rank: what for rank, (what, _) in
                         read_statuses(status_dir, num_workers).items()}
    for thread in forwarders:
        thread.join(timeout=5)
    return failure


def _die_with_parent():
    # Linux: a worker gets SIGTERM when the launcher dies, even by SIGKILL, so that killing
    # the launcher never leaves orphaned workers training on.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _wait_for_workers(workers, followers):
    """Wait until every worker exited 0 (None) or one failed (its WorkerExit).

    The failure reported is the cause: when one worker raises, Horovod shuts down on every
    worker and the others fail too ("Horovod has been shut down"), sometimes before the
    culprit has finished exiting. So after the first failure the others get a moment to end,
    and a worker that failed of its own accord (not in `followers`) is named first.
    """
    exits = queue.Queue()
    for rank, process in enumerate(workers):
        threading.Thread(target=lambda r=rank, p=process: exits.put((r, p.wait())),
                         daemon=True).start()
    failed = []
    for _ in workers:
        try:
            rank, code = exits.get(timeout=FOLLOWER_SECONDS if failed else None)
        except queue.Empty:
            break
        if code != 0:
            failed.append(WorkerExit(rank, code))
    if not failed:
        return None
    causes = [failure for failure in failed if failure.rank not in followers]
    return (causes or failed)[0]


def _stop(workers):
    """SIGTERM every worker still running, then SIGKILL those still there after a grace time."""
    for process in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in workers:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Run a command as N Horovod (Gloo) workers on this machine, on loopback "
                    "only; ends with the first failing worker's status.",
        usage="python -m engine.launcher -n N COMMAND [ARGS...]")
    parser.add_argument("-n", "--num-workers", type=int, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if not args.command:
        parser.error("give the command to run")
    failure = run_workers(args.command, args.num_workers)
    if failure is None:
        return 0
    for line in explain(failure, args.num_workers):
        print(f"launcher: {line}", file=sys.stderr)
    return failure.exit_status


if __name__ == "__main__":
    sys.exit(main())
