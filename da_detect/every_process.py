"""Errors that every process raises alike.

With several processes, an error that only some of them hit leaves the others waiting in their
next collective until torchrun stops them (on other machines, failing with a gloo "connection
closed" traceback). Gathering each process's problem at a point every process reaches lets all
of them raise the same error, naming whose problem it was where not every process had the same;
process 0 alone need report it.
"""
import contextlib

from detectron2.utils import comm


def raise_for_problems(problem, error_type, describe="{}".format):
    """Gather ``problem`` (a message, or None) from every process; every process must call this
    at the same point. Where any has one, raise ``error_type(describe(problems))`` in every
    process, ``problems`` being the message that every process has, where they all have the same
    one, else each process's message after "process r: ", joined by "; ". The error's
    ``raised_in_every_process`` is True."""
    problems = comm.all_gather(problem)
    if all(p is None for p in problems):
        return
    if len(set(problems)) == 1:
        message = problems[0]
    else:
        message = "; ".join(f"process {rank}: {p}" for rank, p in enumerate(problems)
                            if p is not None)
    error = error_type(describe(message))
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
