"""Errors that every process raises alike.

With several processes, an error that only some of them hit leaves the others waiting in their
next collective until torchrun stops them (on other machines, failing with a gloo "connection
closed" traceback). Gathering each process's problem at a point every process reaches lets all
of them raise the same error, naming whose problem it was; process 0 alone need report it.
"""
import contextlib

from detectron2.utils import comm


def raise_for_problems(problem, error_type, describe="{}".format):
    """Gather ``problem`` (a message, or None) from every process; every process must call this
    at the same point. Where any has one, raise ``error_type(describe(problems))`` in every
    process, ``problems`` being the messages joined by "; ", each after "process r: " where there
    are several processes. The error's ``raised_in_every_process`` is True."""
    problems = comm.all_gather(problem)
    named = [p if len(problems) == 1 else f"process {rank}: {p}"
             for rank, p in enumerate(problems) if p is not None]
    if named:
        error = error_type(describe("; ".join(named)))
        error.raised_in_every_process = True
        raise error


@contextlib.contextmanager
def raised_together(error_type):
    """Run the block in every process; where it raises ``error_type`` in any of them, every
    process raises one ``error_type`` naming each process's message (:func:`raise_for_problems`).
    Every process must enter it at the same point."""
    problem = None
    try:
        yield
    except error_type as e:
        problem = str(e)
    raise_for_problems(problem, error_type)
