"""Checkpoints written atomically and loaded without running arbitrary pickled code.

Checkpoint files (``.pth``, detectron2's ``.pkl``) are Python pickles, and unpickling a file can run
any code its author put in it. :class:`DACheckpointer` loads ``.pth`` files with
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers: every
checkpoint da-detect writes, and torchvision's weights, load that way. A file that needs more (a
pickled model object, a ``.pkl`` from detectron2's model zoo) is refused with a message naming it,
unless ``MODEL.ALLOW_UNSAFE_PICKLE`` is set for files you trust.
"""
import os
import pickle

import torch
from detectron2.checkpoint import DetectionCheckpointer


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, or only by a full (unsafe) unpickling; the message
    names the file."""


class DACheckpointer(DetectionCheckpointer):
    """detectron2's DetectionCheckpointer, with:

    * atomic saves: a checkpoint is written to a temporary file and renamed into place, and
      ``last_checkpoint`` likewise, so a kill during a save never leaves a truncated file under a
      checkpoint's name nor a ``last_checkpoint`` naming one: ``--resume`` finds the last complete
      checkpoint;
    * safe loading (see the module docstring); ``allow_unsafe_pickle`` opts out.
    """

    def __init__(self, model, save_dir="", *, allow_unsafe_pickle=False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.allow_unsafe_pickle = allow_unsafe_pickle

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        _write_atomically(path, lambda f: torch.save(data, f), "wb")
        self.tag_last_checkpoint(basename)

    def load(self, path, *args, **kwargs):
        """detectron2's ``load``; a :class:`CheckpointError` naming ``path`` where no such local
        file exists (a URL is left to detectron2's path manager)."""
        if path and "://" not in path and not os.path.isfile(path):
            raise CheckpointError(f"{path}: no such checkpoint file")
        return super().load(path, *args, **kwargs)

    def tag_last_checkpoint(self, last_filename_basename):
        _write_atomically(os.path.join(self.save_dir, "last_checkpoint"),
                          lambda f: f.write(last_filename_basename), "w")

    def _load_file(self, filename):
        if filename.endswith(".pkl"):
            if not self.allow_unsafe_pickle:
                raise CheckpointError(
                    f"{filename}: a .pkl checkpoint loads only by unpickling it, which can run "
                    f"arbitrary code; set MODEL.ALLOW_UNSAFE_PICKLE True if you trust this file")
            return super()._load_file(filename)  # detectron2's: pickle, model-zoo formats
        try:
            loaded = torch.load(filename, map_location="cpu",
                                weights_only=not self.allow_unsafe_pickle)
        except pickle.UnpicklingError as e:
            # torch names the class or function it refuses; a damaged pickle names none
            refused = next((line.strip() for line in str(e).splitlines()
                            if "GLOBAL" in line or "Unsupported class" in line), None)
            if refused is None:
                raise CheckpointError(f"{filename}: not a readable checkpoint (a damaged "
                                      f"pickle)") from e
            raise CheckpointError(
                f"{filename}: torch.load(weights_only=True) refuses it ({refused}); set "
                f"MODEL.ALLOW_UNSAFE_PICKLE True if you trust this file") from e
        except (RuntimeError, EOFError, KeyError, ValueError) as e:  # truncated, not a torch file
            raise CheckpointError(f"{filename}: not a readable checkpoint "
                                  f"({type(e).__name__}: {e})") from e
        checkpoint = loaded if isinstance(loaded, dict) and "model" in loaded else {"model": loaded}
        if not isinstance(checkpoint["model"], dict):
            raise CheckpointError(f"{filename}: holds no dict of weights (a "
                                  f"{type(checkpoint['model']).__name__})")
        return checkpoint

    def _load_model(self, checkpoint):
        """detectron2's; the names of the model's weights that the checkpoint did not give
        (absent, or of another shape) are kept in ``missing_weights``."""
        incompatible = super()._load_model(checkpoint)
        self.missing_weights = list(incompatible.missing_keys)
        return incompatible


def _write_atomically(path, write, mode):
    """``write(f)`` to a temporary file beside ``path``, flushed to disk, then renamed to it."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
