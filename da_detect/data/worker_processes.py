"""How data loader workers start: forked from a forkserver, not from the training process.

A child forked while another thread of its parent holds CPython's thread-list lock deadlocks in
the fork itself, before it runs any Python (CPython gh-112275, fixed in 3.12). A training
process runs other threads (gloo's, under torchrun), so a DataLoader worker forked from it would
now and then never start, and the run would hang without a word. A forkserver forks the workers
from a server process that runs no other thread and has imported da-detect (so torch and
detectron2) once; they receive the dataset and its mapper pickled.
"""
import multiprocessing


def worker_start_method(num_workers):
    """The ``multiprocessing_context`` of a DataLoader with ``num_workers`` workers: the
    forkserver, or None (which is all DataLoader accepts) when it has none."""
    if num_workers == 0:
        return None
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(["da_detect"])  # read when the server starts
    return forkserver
