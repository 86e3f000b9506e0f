"""Config keys of da-detect, added to detectron2's defaults by :func:`add_da_config`, and
:func:`load_config`, which reads a config and checks its values and dataset names (errors name
the file or key).

The total training loss is the paper's Eq. (10)::

    L = L_det + MODEL.DA.LOSS_WEIGHT * (w_img * L_img + w_ins * L_ins + w_cst * L_cst)

with ``w_*`` the per-part ``LOSS_WEIGHT`` below (1.0 reproduces the paper) and each part switched
on or off by its ``ENABLED`` key, so the paper's ablation is four configs.
"""
import difflib
import math
import os
import re

import yaml
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog

from .data.albumentations_augmentation import build_albumentations
from .data.custom import register_from_config
from .data.problems import DatasetError

GRL_SCHEDULES = ("constant", "dann")
AP_METHODS = ("coco", "voc07")
WANDB_MODES = ("offline", "online", "disabled")
LR_SCHEDULERS = ("WarmupMultiStepLR", "WarmupCosineLR")  # detectron2 v0.6's
CONFIG_KEY = re.compile(r"[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)+")  # e.g. SOLVER.BASE_LR
COMMAND_LINE_FLAG = re.compile(r"--[a-z][a-z0-9-]*")  # e.g. --eval-only
UNKNOWN_KEY = re.compile(r"Non-existent (?:config )?key: (\S+)")  # yacs' words


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file, key or dataset at fault."""


def add_da_config(cfg):
    """Add da-detect's keys (with their defaults) to a detectron2 config, in place."""
    # Unlabeled target-domain training data, drawn beside DATASETS.TRAIN at every step.
    cfg.DATASETS.TARGET_TRAIN = ()
    # The user's own domains, registered under the names given (see da_detect/data/custom.py):
    cfg.DATASETS.COCO_DOMAINS = ()  # ((name, json_file, image_root), ...)
    cfg.DATASETS.VOC_DOMAINS = ()  # ((name, voc_root, image_set, "class1,class2"), ...)
    cfg.DATASETS.IMAGE_FOLDER_DOMAINS = ()  # ((name, folder), ...): unlabeled images
    # Target images per step, over all processes; -1: the same as SOLVER.IMS_PER_BATCH.
    cfg.SOLVER.TARGET_IMS_PER_BATCH = -1
    # The final model is the mean of the weights after steps MAX_ITER, MAX_ITER - PERIOD, ...
    # down to START_ITER (engine/weight_averaging.py).
    cfg.SOLVER.WEIGHT_AVERAGING = CN()
    cfg.SOLVER.WEIGHT_AVERAGING.ENABLED = False
    cfg.SOLVER.WEIGHT_AVERAGING.START_ITER = 0
    cfg.SOLVER.WEIGHT_AVERAGING.PERIOD = 1

    # albumentations pixel-level transforms for source / target training images, e.g.
    # ["RandomFog(p=0.3)"] (see da_detect/data/albumentations_augmentation.py).
    cfg.INPUT.ALBUMENTATIONS = CN()
    cfg.INPUT.ALBUMENTATIONS.SOURCE = []
    cfg.INPUT.ALBUMENTATIONS.TARGET = []

    # Unpickle checkpoints that torch.load(weights_only=True) refuses (see da_detect/checkpoint.py).
    cfg.MODEL.ALLOW_UNSAFE_PICKLE = False

    # Per-class AP50 as COCO computes it ("coco") or as PASCAL VOC 2007 does (11-point, "voc07").
    cfg.TEST.AP_METHOD = "coco"

    # Experiment tracking with Weights & Biases, beside TensorBoard (see engine/wandb_writer.py).
    cfg.WANDB = CN()
    cfg.WANDB.ENABLED = True
    cfg.WANDB.MODE = "offline"  # "online" to upload as you train (needs network and a login)
    cfg.WANDB.PROJECT = "da-detect"
    cfg.WANDB.NAME = ""  # empty: wandb picks one

    cfg.MODEL.DA = CN()
    cfg.MODEL.DA.LOSS_WEIGHT = 0.1  # lambda of Eq. (10)
    # Gradient reversal: each classifier's GRL_LAMBDA, constant or ramped by the DANN schedule
    # 2 / (1 + exp(-GRL_GAMMA * p)) - 1 over training progress p in [0, 1].
    cfg.MODEL.DA.GRL_SCHEDULE = "constant"
    cfg.MODEL.DA.GRL_GAMMA = 10.0
    # The training step adaptation starts at: before it, steps are source-only (their target
    # images are not read). 0, the paper's: from the first step.
    cfg.MODEL.DA.START_ITER = 0

    cfg.MODEL.DA.IMAGE = CN()
    cfg.MODEL.DA.IMAGE.ENABLED = True
    cfg.MODEL.DA.IMAGE.LOSS_WEIGHT = 1.0
    cfg.MODEL.DA.IMAGE.GRL_LAMBDA = 1.0
    # Backbone features to classify; empty: the ones the RPN reads (res4 for C4, p2-p6 for FPN).
    cfg.MODEL.DA.IMAGE.IN_FEATURES = []
    # FPN: one classifier shared by every level (True) or one per level (False).
    cfg.MODEL.DA.IMAGE.SHARED = True
    cfg.MODEL.DA.IMAGE.HIDDEN_CHANNELS = 512

    cfg.MODEL.DA.INSTANCE = CN()
    cfg.MODEL.DA.INSTANCE.ENABLED = True
    cfg.MODEL.DA.INSTANCE.LOSS_WEIGHT = 1.0
    cfg.MODEL.DA.INSTANCE.GRL_LAMBDA = 1.0
    cfg.MODEL.DA.INSTANCE.HIDDEN_DIM = 1024
    cfg.MODEL.DA.INSTANCE.DROPOUT = 0.5
    # Top RPN proposals per image, source and target alike, given to the instance classifier;
    # -1: half MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE (source and target regions together then cost
    # the ROI box head what the detection loss's regions cost).
    cfg.MODEL.DA.INSTANCE.REGIONS_PER_IMAGE = -1

    cfg.MODEL.DA.CONSISTENCY = CN()
    cfg.MODEL.DA.CONSISTENCY.ENABLED = True
    cfg.MODEL.DA.CONSISTENCY.LOSS_WEIGHT = 1.0


def check_da_config(cfg):
    """Raise ValueError naming the key if a value is out of range: da-detect's keys, and
    detectron2's that would otherwise fail midway with a traceback, or train on nothing."""
    da = cfg.MODEL.DA

    def require(ok, key, value, what):
        if not ok:
            raise ValueError(f"{key} = {value!r}: {what}")

    require(da.LOSS_WEIGHT >= 0, "MODEL.DA.LOSS_WEIGHT", da.LOSS_WEIGHT, "must be >= 0")
    require(da.GRL_SCHEDULE in GRL_SCHEDULES, "MODEL.DA.GRL_SCHEDULE", da.GRL_SCHEDULE,
            f"must be one of {GRL_SCHEDULES}")
    require(da.GRL_GAMMA > 0, "MODEL.DA.GRL_GAMMA", da.GRL_GAMMA, "must be > 0")
    require(da.START_ITER >= 0, "MODEL.DA.START_ITER", da.START_ITER, "must be >= 0")
    require(cfg.TEST.AP_METHOD in AP_METHODS, "TEST.AP_METHOD", cfg.TEST.AP_METHOD,
            f"must be one of {AP_METHODS}")
    require(cfg.WANDB.MODE in WANDB_MODES, "WANDB.MODE", cfg.WANDB.MODE,
            f"must be one of {WANDB_MODES}")
    for part in ("IMAGE", "INSTANCE", "CONSISTENCY"):
        weight = da[part].LOSS_WEIGHT
        require(weight >= 0, f"MODEL.DA.{part}.LOSS_WEIGHT", weight, "must be >= 0")
    for part in ("IMAGE", "INSTANCE"):
        lam = da[part].GRL_LAMBDA
        require(lam >= 0, f"MODEL.DA.{part}.GRL_LAMBDA", lam, "must be >= 0")
    require(da.INSTANCE.DROPOUT >= 0 and da.INSTANCE.DROPOUT < 1, "MODEL.DA.INSTANCE.DROPOUT",
            da.INSTANCE.DROPOUT, "must be in [0, 1)")
    require(da.INSTANCE.REGIONS_PER_IMAGE == -1 or da.INSTANCE.REGIONS_PER_IMAGE > 0,
            "MODEL.DA.INSTANCE.REGIONS_PER_IMAGE", da.INSTANCE.REGIONS_PER_IMAGE, "must be > 0 or -1")
    positive = {"SOLVER.IMS_PER_BATCH": cfg.SOLVER.IMS_PER_BATCH,
                "SOLVER.MAX_ITER": cfg.SOLVER.MAX_ITER,
                "SOLVER.CHECKPOINT_PERIOD": cfg.SOLVER.CHECKPOINT_PERIOD,
                "INPUT.MAX_SIZE_TRAIN": cfg.INPUT.MAX_SIZE_TRAIN}
    for key, value in positive.items():
        require(value > 0, key, value, "must be > 0")
    require(math.isfinite(cfg.SOLVER.BASE_LR) and cfg.SOLVER.BASE_LR >= 0, "SOLVER.BASE_LR",
            cfg.SOLVER.BASE_LR, "must be a number >= 0")
    averaging = cfg.SOLVER.WEIGHT_AVERAGING
    require(averaging.PERIOD > 0, "SOLVER.WEIGHT_AVERAGING.PERIOD", averaging.PERIOD, "must be > 0")
    require(0 <= averaging.START_ITER <= cfg.SOLVER.MAX_ITER,
            "SOLVER.WEIGHT_AVERAGING.START_ITER", averaging.START_ITER,
            f"must be in [0, SOLVER.MAX_ITER = {cfg.SOLVER.MAX_ITER}]")
    for key, value in {"DATALOADER.NUM_WORKERS": cfg.DATALOADER.NUM_WORKERS,
                       "TEST.EVAL_PERIOD": cfg.TEST.EVAL_PERIOD}.items():
        require(value >= 0, key, value, "must be >= 0")
    sizes = cfg.INPUT.MIN_SIZE_TRAIN
    require(len(sizes) > 0 and min(sizes) > 0, "INPUT.MIN_SIZE_TRAIN", sizes,
            "must hold one size or more, each > 0")
    require(cfg.SOLVER.LR_SCHEDULER_NAME in LR_SCHEDULERS, "SOLVER.LR_SCHEDULER_NAME",
            cfg.SOLVER.LR_SCHEDULER_NAME, f"must be one of {LR_SCHEDULERS}")
    if cfg.SOLVER.LR_SCHEDULER_NAME == "WarmupMultiStepLR":
        # detectron2 drops the steps after the last; fvcore's scheduler refuses the others
        # unless they rise from 1 to below it
        max_iter = cfg.SOLVER.MAX_ITER
        steps = [step for step in cfg.SOLVER.STEPS if step <= max_iter]
        require(all(0 < step < after for step, after in zip(steps, [*steps[1:], max_iter])),
                "SOLVER.STEPS", cfg.SOLVER.STEPS,
                f"must rise, each in [1, SOLVER.MAX_ITER = {max_iter}) or after it (then unused)")
    require(cfg.SOLVER.TARGET_IMS_PER_BATCH == -1 or cfg.SOLVER.TARGET_IMS_PER_BATCH > 0,
            "SOLVER.TARGET_IMS_PER_BATCH", cfg.SOLVER.TARGET_IMS_PER_BATCH,
            "must be > 0 (or -1 for SOLVER.IMS_PER_BATCH) when adapting")
    reference = cfg.SOLVER.REFERENCE_WORLD_SIZE
    if reference > 0:  # the batches are scaled to the number of processes (auto_scale_workers)
        for key in ("IMS_PER_BATCH", "TARGET_IMS_PER_BATCH"):
            size = cfg.SOLVER[key]
            require(size == -1 or size % reference == 0, f"SOLVER.{key}", size,
                    f"must be a multiple of SOLVER.REFERENCE_WORLD_SIZE = {reference}")
    for role in ("SOURCE", "TARGET"):
        build_albumentations(cfg, role)  # raises ValueError naming the key
    if da.CONSISTENCY.ENABLED:
        require(da.IMAGE.ENABLED and da.INSTANCE.ENABLED, "MODEL.DA.CONSISTENCY.ENABLED", True,
                "needs MODEL.DA.IMAGE.ENABLED and MODEL.DA.INSTANCE.ENABLED")


def config_differences(before, after):
    """``"KEY: BEFORE -> AFTER"`` for each key whose value differs between two configs' YAML
    (``cfg.dump()``)."""
    def differences(old, new, prefix):
        if isinstance(old, dict) and isinstance(new, dict):
            return [line for key in sorted(old.keys() | new.keys())
                    for line in differences(old.get(key), new.get(key), f"{prefix}{key}.")]
        return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]

    return differences(yaml.safe_load(before), yaml.safe_load(after), "")


def check_dataset_names(cfg):
    """Raise ConfigError for a dataset name that no loader registered."""
    for key in ("DATASETS.TRAIN", "DATASETS.TARGET_TRAIN", "DATASETS.TEST"):
        for name in cfg.DATASETS[key.split(".")[1]]:
            require_registered(name, key)


def require_registered(name, what=""):
    """Raise ConfigError, ``"WHAT: unknown dataset name 'NAME' (did you mean ...)"``, where no
    loader registered ``name``."""
    registered = DatasetCatalog.list()
    if name not in registered:
        raise ConfigError(f"{what}{': ' if what else ''}unknown dataset name {name!r}"
                          f"{did_you_mean(name, registered)}")


def did_you_mean(name, choices):
    """``" (did you mean 'a' or 'b'?)"``, naming up to three of ``choices`` close to ``name``;
    "" where none is."""
    close = difflib.get_close_matches(name, choices, n=3)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


# detectron2's norms (``get_norm``) that normalize with the statistics of the batch
BATCH_STATISTICS_NORMS = ("BN", "SyncBN", "nnSyncBN", "naiveSyncBN", "naiveSyncBN_N")


def check_adaptation_data(cfg):
    """Raise ConfigError where the model and DATASETS.TARGET_TRAIN do not go together for
    training: target images for a model that cannot take them (unlabeled, they would reach its
    detection losses, or, through batch norm, its source images' detection losses), or a
    domain-adaptive model with nothing to adapt to, or no step to adapt in."""
    adaptive = cfg.MODEL.META_ARCHITECTURE == "DomainAdaptiveRCNN"
    if cfg.DATASETS.TARGET_TRAIN and not adaptive:
        raise ConfigError(f"DATASETS.TARGET_TRAIN {tuple(cfg.DATASETS.TARGET_TRAIN)} needs "
                          f"MODEL.META_ARCHITECTURE 'DomainAdaptiveRCNN', not "
                          f"{cfg.MODEL.META_ARCHITECTURE!r}")
    adapts = adaptive and (cfg.MODEL.DA.IMAGE.ENABLED or cfg.MODEL.DA.INSTANCE.ENABLED)
    if adapts and not cfg.DATASETS.TARGET_TRAIN:
        raise ConfigError("DATASETS.TARGET_TRAIN is empty: the domain classifiers "
                          "(MODEL.DA.IMAGE / INSTANCE.ENABLED) have no target images to adapt to")
    if adapts and cfg.MODEL.DA.START_ITER >= cfg.SOLVER.MAX_ITER:
        raise ConfigError(f"MODEL.DA.START_ITER = {cfg.MODEL.DA.START_ITER}: adaptation would "
                          f"start after the last step (SOLVER.MAX_ITER = {cfg.SOLVER.MAX_ITER}), "
                          f"and every step would be source-only: lower it below SOLVER.MAX_ITER")
    if adaptive and cfg.DATASETS.TARGET_TRAIN:
        norms = {"MODEL.RESNETS.NORM": cfg.MODEL.RESNETS.NORM, "MODEL.FPN.NORM": cfg.MODEL.FPN.NORM,
                 "MODEL.ROI_BOX_HEAD.NORM": cfg.MODEL.ROI_BOX_HEAD.NORM}
        for key, norm in norms.items():
            if norm in BATCH_STATISTICS_NORMS:
                raise ConfigError(f"{key} = {norm!r}: batch statistics would mix the source and "
                                  f"target images of a step, so unlabeled target images would "
                                  f"change the source detection losses; use 'FrozenBN' or 'GN'")


DEPLOYMENT_ROI_HEADS = {"DomainAdaptiveStandardROIHeads": "StandardROIHeads",
                        "DomainAdaptiveRes5ROIHeads": "Res5ROIHeads"}


def deployment_config(cfg):
    """A copy of ``cfg`` for detectron2's plain ``GeneralizedRCNN`` with the standard ROI heads:
    the model a domain-adaptive checkpoint is deployed in, trained on source data alone."""
    plain = cfg.clone()
    plain.defrost()
    plain.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    plain.MODEL.ROI_HEADS.NAME = DEPLOYMENT_ROI_HEADS.get(cfg.MODEL.ROI_HEADS.NAME,
                                                          cfg.MODEL.ROI_HEADS.NAME)
    plain.DATASETS.TARGET_TRAIN = ()
    return plain


def load_config(config_file, opts=()):
    """detectron2's defaults + da-detect's keys, then ``config_file``, then ``KEY VALUE`` opts.

    Raises ConfigError naming the file or key for a missing file, an unknown key, a value out of
    range or an unknown dataset.
    """
    if not config_file:
        raise ConfigError("no config file given (--config-file FILE)")
    if not os.path.isfile(config_file):
        raise ConfigError(f"config file not found: {config_file}"
                          f"{' (a folder)' if os.path.isdir(config_file) else ''}")
    _check_base_chain(config_file)
    cfg = get_cfg()
    add_da_config(cfg)
    try:
        cfg.merge_from_file(config_file)
    except FileNotFoundError as e:  # the file exists: one of its _BASE_ files does not
        raise ConfigError(f"{config_file}: a _BASE_ file in its chain is not found: "
                          f"{e.filename} (a _BASE_ path is relative to the file that names "
                          f"it)") from e
    except yaml.YAMLError as e:  # the message names the file (a _BASE_ one too), line, column
        raise ConfigError(f"{config_file}: not valid YAML: {' '.join(str(e).split())}") from e
    except (KeyError, ValueError, AssertionError, OSError) as e:
        raise ConfigError(f"{config_file}: {_message(e, cfg)}") from e
    flag = next((o for o in opts if COMMAND_LINE_FLAG.fullmatch(str(o))), None)
    if flag:
        raise ConfigError(f"command-line override {flag}: a flag among the KEY VALUE overrides "
                          f"(give it before them)")
    if len(opts) % 2:
        raise ConfigError(f"command-line override {_key_without_value(list(opts))}: no value "
                          f"(overrides are KEY VALUE pairs)")
    try:
        cfg.merge_from_list(list(opts))
    except (KeyError, ValueError, AssertionError) as e:
        raise ConfigError(f"command-line override: {_message(e, cfg)}") from e
    try:
        check_da_config(cfg)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    try:
        register_from_config(cfg)
    except DatasetError as e:
        raise ConfigError(str(e)) from e
    check_dataset_names(cfg)
    return cfg


def _check_base_chain(config_file, chain=()):
    """A ConfigError naming the file of ``config_file``'s _BASE_ chain that holds no mapping of
    keys (a list, a string, nothing), or that names a file already in the chain (fvcore would
    recurse until Python stops it). Files that cannot be read or parsed are left to
    ``merge_from_file``, which names them."""
    chain = (*chain, config_file)
    try:
        with open(config_file) as f:
            content = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return
    if not isinstance(content, dict):
        held = "nothing" if content is None else f"a {type(content).__name__}"
        raise ConfigError(f"{config_file}: not a mapping of config keys (KEY: value), but "
                          f"{held}")
    base = content.get("_BASE_")
    if not isinstance(base, str):
        return
    base = os.path.expanduser(base)
    if not base.startswith(("/", "https://", "http://")):  # fvcore's rule: relative to the file
        base = os.path.join(os.path.dirname(config_file), base)
    if any(os.path.exists(base) and os.path.samefile(base, f) for f in chain):
        raise ConfigError(f"{chain[0]}: its _BASE_ chain loops: "
                          f"{' -> '.join([*chain, base])}")
    _check_base_chain(base, chain)


def _message(error, cfg):
    """The error's text; for an unknown key (yacs' "Non-existent key: ..."), with the keys of
    ``cfg`` close to it."""
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    unknown = UNKNOWN_KEY.fullmatch(str(message))
    return message + (did_you_mean(unknown.group(1), list(_keys(cfg))) if unknown else "")


def _keys(node, prefix=""):
    """Every key of the config ``node``, dotted (``MODEL.DA.LOSS_WEIGHT``)."""
    for name, value in node.items():
        if isinstance(value, CN):
            yield from _keys(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def _key_without_value(opts):
    """The first KEY of KEY VALUE ``opts`` that has no value: the next token is a key, or none."""
    for i in range(0, len(opts), 2):
        if i + 1 == len(opts) or CONFIG_KEY.fullmatch(str(opts[i + 1])):
            return opts[i]
    return opts[-1]
