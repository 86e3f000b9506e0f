"""How data loader workers start where CPython can deadlock in a fork: from a forkserver.

CPython before 3.9.20, 3.10.15 and 3.11.10 (gh-112275; 3.12 never had it) can leave a child
forked while another thread of its parent creates or deletes a Python thread state hung in the
fork itself, before it runs a line. A training process has such threads (under torchrun, a
worker forked from it once never started, and the run hung without a word). On those versions,
where workers would be forked (Linux's default), they are forked from a forkserver instead: a
server process that has imported da-detect (so torch and detectron2) once and runs no other
Python thread. They receive the dataset and its mapper pickled. A worker started from a
forkserver, here or where it is the default (Python 3.14 on), exits once the process that started
it has ended: torch's own check watches a worker's parent, the server, which lives on while any
worker does. A worker that ends while it reads is named with how it ended (:func:`batches`).
"""
import multiprocessing
import os
import signal
import sys
import threading
import time
from functools import partial

# the first release of each affected branch with gh-112275 fixed
FIXED_IN = {(3, 9): (3, 9, 20), (3, 10): (3, 10, 15), (3, 11): (3, 11, 10)}
# how often a worker started from the forkserver checks that its training process is alive
WATCH_INTERVAL = 5.0


class WorkerEndedError(RuntimeError):
    """A data loader worker process ended while its loader read with it."""


def forks_can_deadlock(version=None):
    """Whether this interpreter (or ``version``, a ``sys.version_info``-like tuple) has
    gh-112275."""
    version = tuple((version or sys.version_info)[:3])
    return version < FIXED_IN.get(version[:2], (0,))


def start_workers_safely(loader):
    """Make the DataLoader ``loader`` start its workers from the forkserver where they would be
    forked by an interpreter with gh-112275 (:func:`forks_can_deadlock`), and end them with this
    process wherever they start from the forkserver (as by default from Python 3.14), after
    which the loader's own ``worker_init_fn``, if any, still runs; returns it."""
    if not loader.num_workers:
        return loader
    method = multiprocessing.get_start_method(allow_none=True) or (
        multiprocessing.get_all_start_methods()[0])
    if method == "fork" and forks_can_deadlock():
        forkserver = multiprocessing.get_context("forkserver")
        forkserver.set_forkserver_preload(["da_detect"])  # read when the server starts
        loader.multiprocessing_context = forkserver
        method = "forkserver"
    if method == "forkserver":
        loader.worker_init_fn = partial(exit_with, os.getpid(), loader.worker_init_fn)
    return loader


def exit_with(pid, then, worker_id):
    """A DataLoader ``worker_init_fn``: the worker exits within WATCH_INTERVAL seconds of the end
    of process ``pid`` (once its parent has reaped it); ``then(worker_id)`` runs next, where
    ``then`` is not None."""
    threading.Thread(target=_exit_once_ended, args=(pid,), daemon=True).start()
    if then is not None:
        then(worker_id)


def _exit_once_ended(pid):
    while True:
        time.sleep(WATCH_INTERVAL)
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError):  # gone (its pid another user's since)
            os._exit(1)


def batches(loader):
    """The batches of the DataLoader ``loader``. A worker that ends while it reads raises a
    :class:`WorkerEndedError` saying how (killed by which signal, or its exit status), where
    torch's error names its pid alone for a worker that is not this process's child, as one
    started from a forkserver is not."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except RuntimeError as e:  # torch's "DataLoader worker (pid(s) ...) exited unexpectedly"
            ended = [worker for worker in getattr(iterator, "_workers", ()) if worker.exitcode]
            if not ended:
                raise
            raise WorkerEndedError("; ".join(map(how_it_ended, ended))) from e
        yield batch


def how_it_ended(worker):
    """How the ended multiprocessing Process ``worker`` ended, in words."""
    what = f"a data loader worker (pid {worker.pid})"
    if worker.exitcode > 0:
        return f"{what} exited with status {worker.exitcode}"
    try:
        name = signal.Signals(-worker.exitcode).name
    except ValueError:
        name = f"signal {-worker.exitcode}"
    if name != "SIGKILL":
        return f"{what} was killed by {name}"
    return (f"{what} was killed by SIGKILL, as the system kills a process when memory runs out: "
            f"fewer DATALOADER.NUM_WORKERS, or fewer images per step, use less")
