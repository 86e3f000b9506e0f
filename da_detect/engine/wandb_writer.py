"""A detectron2 EventWriter that sends every logged scalar, and the config, to Weights & Biases."""
from collections import defaultdict

import yaml
from detectron2.utils.events import EventWriter, get_event_storage

from ..config import ConfigError


class WandbWriter(EventWriter):
    """Logs what detectron2's EventStorage holds (each loss term, ``da/*`` domain-classifier
    accuracies and GRL lambdas, the learning rate, evaluation AP per split and class) at its
    iteration, smoothed as the JSON writer smooths it. The full config is the run's config.

    ``WANDB.MODE``: ``offline`` (files under OUTPUT_DIR/wandb, ``wandb sync`` them later),
    ``online`` or ``disabled``.
    """

    def __init__(self, cfg, window_size=20):
        """A :class:`ConfigError` where wandb is not installed or cannot start the run (no API
        key, no network): WANDB.ENABLED False or WANDB.MODE offline go on without them."""
        try:
            import wandb
        except ImportError as e:
            raise ConfigError("WANDB.ENABLED True needs the wandb package (pip install wandb); "
                              "or set WANDB.ENABLED False") from e
        self._window_size = window_size
        self._last_write = -1
        try:
            self._run = wandb.init(
                project=cfg.WANDB.PROJECT, name=cfg.WANDB.NAME or None, mode=cfg.WANDB.MODE,
                dir=cfg.OUTPUT_DIR, config=yaml.safe_load(cfg.dump()))
        except wandb.errors.Error as e:
            raise ConfigError(f"WANDB.MODE {cfg.WANDB.MODE!r}: wandb could not start the run "
                              f"({type(e).__name__}: {e}); set WANDB.MODE offline (and "
                              f"`wandb sync` later) or WANDB.ENABLED False") from e

    def write(self):
        storage = get_event_storage()
        by_iteration = defaultdict(dict)
        for key, (value, iteration) in storage.latest_with_smoothing_hint(
                self._window_size).items():
            if iteration > self._last_write:
                by_iteration[iteration][key] = value
        for iteration in sorted(by_iteration):
            self._run.log(by_iteration[iteration], step=iteration)
        if by_iteration:
            self._last_write = max(by_iteration)

    def close(self):
        self._run.finish()
