"""Gradient reversal (Ganin & Lempitsky, 2015), as placed before each domain classifier."""
import math

import torch


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, coefficient):
        ctx.coefficient = coefficient
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output * ctx.coefficient, None


def scale_gradient(x, coefficient):
    """Identity in the forward pass; multiplies the incoming gradient by ``coefficient``."""
    return _ScaleGradient.apply(x, coefficient)


def reverse_gradient(x, lambda_):
    """The gradient reversal layer: identity forward, gradient times ``-lambda_`` backward."""
    return scale_gradient(x, -lambda_)


def grl_lambda(base, schedule, progress, gamma=10.0):
    """GRL coefficient at training ``progress`` in [0, 1].

    ``"constant"``: ``base``. ``"dann"``: ``base * (2 / (1 + exp(-gamma * progress)) - 1)``, the
    schedule of Ganin et al. (2016), which rises from 0 to ``base`` and so keeps the classifiers'
    noisy early gradients out of the backbone.
    """
    if schedule == "constant":
        return base
    if schedule == "dann":
        return base * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)
    raise ValueError(f"unknown GRL schedule {schedule!r}")
