"""The model a trainer trains, without detectron2's DistributedDataParallel wrapper."""


def unwrap_model(model):
    """``model.module`` for a model wrapped in (Distributed)DataParallel, else ``model``."""
    return getattr(model, "module", model)
