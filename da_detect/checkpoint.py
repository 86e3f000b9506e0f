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

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils import comm

from .atomic_file import atomic_open
from .every_process import raise_for_problems, raised_together


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, or only by a full (unsafe) unpickling; the message
    names the file."""


class DACheckpointer(DetectionCheckpointer):
    """detectron2's DetectionCheckpointer, with:

    * atomic saves: a checkpoint is written to a temporary file and renamed into place, and
      ``last_checkpoint`` likewise, so a kill during a save never leaves a truncated file under a
      checkpoint's name nor a ``last_checkpoint`` naming one: ``--resume`` finds the last complete
      checkpoint;
    * safe loading (see the module docstring); ``allow_unsafe_pickle`` opts out;
    * with several processes, ``save`` and ``resume_or_load`` are called by every process at the
      same point (process 0 writes): where one process cannot write or load, or where they would
      load different files, every process raises the same :class:`CheckpointError`;
    * resuming from a checkpoint of another model (other weights, or of other shapes) is a
      :class:`CheckpointError`: its optimizer state could not go on with this model.
    """

    def __init__(self, model, save_dir="", *, allow_unsafe_pickle=False, **kwargs):
        super().__init__(model, save_dir, **kwargs)
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self.loaded, self.missing_weights = None, []  # the last checkpoint loaded, what it lacked
        self.resuming = False

    def save(self, name, **kwargs):
        """Process 0 writes ``name``.pth and tags it as the last checkpoint. Every process calls
        this at the same point (DATrainer runs the checkpointer hook in each): where process 0
        cannot write, every process raises the same :class:`CheckpointError` naming the file,
        rather than leaving the others waiting in the next step for a process that has stopped.
        """
        if not self.save_dir:
            return
        with raised_together(CheckpointError):
            if self.save_to_disk:
                self._write(name, kwargs)

    def _write(self, name, extra):
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(extra)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        writing = path
        try:
            with atomic_open(path, "wb") as f:
                torch.save(data, f)
            writing = os.path.join(self.save_dir, "last_checkpoint")
            self.tag_last_checkpoint(basename)
        except OSError as e:  # a full disk, a folder in the way, no permission
            raise CheckpointError(f"{writing}: could not be written ({e.strerror or e}); the "
                                  f"checkpoints saved before it are intact") from e

    def resume_or_load(self, path, *, resume=True):
        """fvcore's: with ``resume``, the last checkpoint of save_dir where it has one (and the
        trainer's state with it), else the weights ``path``. Every process calls this at the same
        point, and every process raises the same :class:`CheckpointError` where any could not
        load its file, or where they would not load the same file (a save_dir that is not one
        folder shared by every machine: the processes would train or evaluate different weights
        together)."""
        resuming = self.resuming = resume and self.has_checkpoint()
        loads = self.get_checkpoint_file() if resuming else path
        if len(set(comm.all_gather(loads))) > 1:
            raise_for_problems(
                f"loads {loads or 'no weights'}"
                f"{' (from its OUTPUT_DIR)' if resuming else ' (MODEL.WEIGHTS)'}",
                CheckpointError,
                lambda sources: f"the processes would not load the same checkpoint: {sources}; "
                                f"--resume needs OUTPUT_DIR {self.save_dir} to be one folder "
                                f"that every machine shares")
        with raised_together(CheckpointError):
            return super().resume_or_load(path, resume=resume)

    def load(self, path, *args, **kwargs):
        """detectron2's ``load``; a :class:`CheckpointError` naming ``path`` where no such local
        file exists (a URL is left to detectron2's path manager)."""
        if path and "://" not in path and not os.path.isfile(path):
            raise CheckpointError(f"{path}: no such checkpoint file"
                                  f"{' (a folder)' if os.path.isdir(path) else ''}")
        self.loaded = path
        return super().load(path, *args, **kwargs)

    def tag_last_checkpoint(self, last_filename_basename):
        with atomic_open(os.path.join(self.save_dir, "last_checkpoint")) as f:
            f.write(last_filename_basename)

    def _load_file(self, filename):
        if filename.endswith((".pkl", ".pyth")):
            if not self.allow_unsafe_pickle:
                raise CheckpointError(
                    f"{filename}: a {os.path.splitext(filename)[1]} checkpoint loads only by "
                    f"unpickling it, which can run arbitrary code; set MODEL.ALLOW_UNSAFE_PICKLE "
                    f"True if you trust this file")
            return super()._load_file(filename)  # detectron2's: model-zoo and pycls formats
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
        except Exception as e:  # truncated, not a torch file: what it raises depends on its bytes
            raise CheckpointError(f"{filename}: not a readable checkpoint "
                                  f"({type(e).__name__}: {e})") from e
        checkpoint = loaded if isinstance(loaded, dict) and "model" in loaded else {"model": loaded}
        if not isinstance(checkpoint["model"], dict):
            raise CheckpointError(f"{filename}: holds no dict of weights (a "
                                  f"{type(checkpoint['model']).__name__})")
        nested = [k for k, v in checkpoint["model"].items()
                  if not isinstance(v, (torch.Tensor, np.ndarray))]
        if nested:
            raise CheckpointError(f"{filename}: holds no dict of weights at its top level or "
                                  f"under 'model' (not tensors: {_first_three(nested)})")
        return checkpoint

    def require_inference_weights(self):
        """Raise a :class:`CheckpointError` naming the checkpoint last loaded where it left out
        any weight inference uses: all but the model's ``TRAINING_ONLY`` modules' (a checkpoint
        of another model would detect with random layers)."""
        training_only = getattr(self.model, "TRAINING_ONLY", ())
        used = [name for name in self.missing_weights if name.split(".")[0] not in training_only]
        if used:
            raise CheckpointError(
                f"{self.loaded}: not a checkpoint of this model: it gives no weights for "
                f"{len(used)} of the tensors inference uses: {_first_three(used)}")

    def require_some_weights(self):
        """Raise a :class:`CheckpointError` naming the checkpoint last loaded where it gave none
        of the model's weights: training would start from random ones."""
        given = set(self.model.state_dict()) - set(self.missing_weights)
        # torch's BatchNorm counts its own steps where a checkpoint does not: never missing
        if self.missing_weights and all(k.endswith("num_batches_tracked") for k in given):
            raise CheckpointError(f"{self.loaded}: gives none of this model's weights (another "
                                  f"model's checkpoint, or one whose weights are named otherwise)")

    def _load_model(self, checkpoint):
        """detectron2's; the names of the model's weights that the checkpoint did not give
        (absent, or of another shape) are kept in ``missing_weights``."""
        incompatible = super()._load_model(checkpoint)
        self.missing_weights = list(incompatible.missing_keys)
        other = [f"{what} {len(names)} weights: {_first_three(names)}"
                 for what, names in (("it lacks", incompatible.missing_keys),
                                     ("it holds, and this model lacks,",
                                      incompatible.unexpected_keys)) if names]
        if self.resuming and other:
            raise CheckpointError(
                f"{self.loaded}: --resume goes on with the run in {self.save_dir}, but this "
                f"checkpoint is of another model than the config's: {'; '.join(other)}. Set "
                f"another OUTPUT_DIR, or start from its weights with MODEL.WEIGHTS {self.loaded} "
                f"(without --resume)")
        return incompatible


def _first_three(names):
    """``"a, b, c, ..."``: the first three of ``names``, and "..." where there are more."""
    return ", ".join(map(str, names[:3])) + (", ..." if len(names) > 3 else "")

