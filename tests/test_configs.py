"""Every config under configs/ loads; the paper's VGG16 detector builds, converts and trains."""
import copy

import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torchvision.models import vgg16, vgg16_bn

from conftest import REPO, SYNTHETIC_DA, SYNTHETIC_FPN, exit_of, run_script_here
from da_detect.checkpoint import DACheckpointer
from da_detect.config import ConfigError, check_adaptation_data, load_config
from da_detect.engine.trainer import DATrainer
from da_detect.modeling.vgg import VGG16, VGG_FEATURE, torchvision_vgg16_to_detectron2

CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_config_loads(path):
    cfg = load_config(str(path))
    if cfg.DATASETS.TARGET_TRAIN:
        assert cfg.MODEL.META_ARCHITECTURE == "DomainAdaptiveRCNN"


def test_a_missing_base_file_is_named_with_the_file_that_names_it(tmp_path):
    (tmp_path / "sub").mkdir()
    config = tmp_path / "sub" / "experiment.yaml"
    config.write_text('_BASE_: "../Base-typo.yaml"\nSOLVER:\n  MAX_ITER: 5\n')
    with pytest.raises(ConfigError) as error:
        load_config(str(config))
    assert str(error.value).startswith(f"{config}: a _BASE_ file in its chain is not found: "
                                       f"{tmp_path}/Base-typo")


def test_a_yaml_syntax_error_is_named_with_its_file_and_line(tmp_path):
    base = tmp_path / "Base.yaml"
    base.write_text("SOLVER:\n  MAX_ITER: [5\n")
    config = tmp_path / "experiment.yaml"
    config.write_text('_BASE_: "Base.yaml"\n')
    with pytest.raises(ConfigError) as error:
        load_config(str(config))
    message = str(error.value)
    assert message.startswith(f"{config}: not valid YAML: while parsing a flow sequence in "
                              f'"{base}", line 2') and "\n" not in message


@pytest.mark.parametrize("content, message", [
    ("- SOLVER\n- MODEL\n", "not a mapping of config keys (KEY: value), but a list"),
    ("SOLVER.MAX_ITER 5\n", "not a mapping of config keys (KEY: value), but a str"),
    ("", "not a mapping of config keys (KEY: value), but nothing"),
])
def test_a_config_file_that_holds_no_keys_is_named(tmp_path, content, message):
    base = tmp_path / "Base.yaml"
    base.write_text(content)
    config = tmp_path / "experiment.yaml"
    config.write_text('_BASE_: "Base.yaml"\n')
    for named in (base, config):
        with pytest.raises(ConfigError) as error:
            load_config(str(named))
        assert str(error.value) == f"{base}: {message}"


def test_a_base_chain_that_loops_is_named(tmp_path):
    (tmp_path / "a.yaml").write_text('_BASE_: "sub/b.yaml"\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text('_BASE_: "../a.yaml"\n')
    with pytest.raises(ConfigError) as error:
        load_config(str(tmp_path / "a.yaml"))
    assert str(error.value) == (f"{tmp_path}/a.yaml: its _BASE_ chain loops: {tmp_path}/a.yaml -> "
                                f"{tmp_path}/sub/b.yaml -> {tmp_path}/sub/../a.yaml")


@pytest.mark.parametrize("config,opts,message", [
    ("", [], "no config file given (--config-file FILE)"),
    ("configs/missing.yaml", [], "config file not found: configs/missing.yaml"),
    ("configs", [], "config file not found: configs (a folder)"),
    (SYNTHETIC_FPN, ["DATASETS.TEST", "('synthetic_fogy_val',)"],
     "DATASETS.TEST: unknown dataset name 'synthetic_fogy_val' (did you mean "
     "'synthetic_foggy_val'"),
    (SYNTHETIC_DA, ["MODEL.DA.IMAGE.GRL_LAMDA", "0.1"],
     "command-line override: Non-existent key: MODEL.DA.IMAGE.GRL_LAMDA (did you mean "
     "'MODEL.DA.IMAGE.GRL_LAMBDA' or "),
    (SYNTHETIC_DA, ["NOTHING.LIKE_IT", "1"],  # and no suggestion where none is close
     "command-line override: Non-existent key: NOTHING.LIKE_IT$"),
    (SYNTHETIC_DA, ["MODEL.DA.GRL_SCHEDULE", "linear"],
     "MODEL.DA.GRL_SCHEDULE = 'linear': must be one of ('constant', 'dann')"),
    (SYNTHETIC_FPN, ["DATASETS.TARGET_TRAIN", "('synthetic_foggy_train',)"],
     "DATASETS.TARGET_TRAIN ('synthetic_foggy_train',) needs MODEL.META_ARCHITECTURE "
     "'DomainAdaptiveRCNN', not 'GeneralizedRCNN'"),
    (SYNTHETIC_DA, ["DATASETS.TARGET_TRAIN", "()"],
     "DATASETS.TARGET_TRAIN is empty: the domain classifiers"),
    (SYNTHETIC_FPN, ["SOLVER.BASE_LR", "SOLVER.MAX_ITER", "3"],
     "command-line override SOLVER.BASE_LR: no value"),
    (SYNTHETIC_DA, ["SOLVER.TARGET_IMS_PER_BATCH", "0"],
     "SOLVER.TARGET_IMS_PER_BATCH = 0: must be > 0"),
    (SYNTHETIC_FPN, ["SOLVER.IMS_PER_BATCH", "0"], "SOLVER.IMS_PER_BATCH = 0: must be > 0"),
    (SYNTHETIC_FPN, ["SOLVER.MAX_ITER", "0"], "SOLVER.MAX_ITER = 0: must be > 0"),
    (SYNTHETIC_FPN, ["SOLVER.MAX_ITER", "-3"], "SOLVER.MAX_ITER = -3: must be > 0"),
    (SYNTHETIC_FPN, ["SOLVER.BASE_LR", "-1.0"], "SOLVER.BASE_LR = -1.0: must be a number >= 0"),
    (SYNTHETIC_FPN, ["SOLVER.BASE_LR", "1e999"], "SOLVER.BASE_LR = inf: must be a number >= 0"),
    (SYNTHETIC_FPN, ["SOLVER.CHECKPOINT_PERIOD", "0"],
     "SOLVER.CHECKPOINT_PERIOD = 0: must be > 0"),
    (SYNTHETIC_FPN, ["DATALOADER.NUM_WORKERS", "-1"], "DATALOADER.NUM_WORKERS = -1: must be >= 0"),
    (SYNTHETIC_FPN, ["TEST.EVAL_PERIOD", "-5"], "TEST.EVAL_PERIOD = -5: must be >= 0"),
    (SYNTHETIC_FPN, ["INPUT.MIN_SIZE_TRAIN", "()"],
     "INPUT.MIN_SIZE_TRAIN = (): must hold one size or more, each > 0"),
    (SYNTHETIC_FPN, ["SOLVER.LR_SCHEDULER_NAME", "Cosine"],
     "SOLVER.LR_SCHEDULER_NAME = 'Cosine': must be one of ('WarmupMultiStepLR', "
     "'WarmupCosineLR')"),
    *[(SYNTHETIC_FPN, ["SOLVER.MAX_ITER", "10", "SOLVER.STEPS", steps],
       f"SOLVER.STEPS = {steps}: must rise, each in [1, SOLVER.MAX_ITER = 10) or after it (then "
       f"unused)") for steps in ("(5, 3)", "(10,)", "(0, 5)", "(5, 5)")],
    (SYNTHETIC_DA, ["MODEL.DA.INSTANCE.DROPOUT", "1.5"],
     "MODEL.DA.INSTANCE.DROPOUT = 1.5: must be in [0, 1)"),
    (SYNTHETIC_DA, ["MODEL.DA.START_ITER", "-1"], "MODEL.DA.START_ITER = -1: must be >= 0"),
    (SYNTHETIC_DA, ["MODEL.DA.INSTANCE.DROPOUT", "1.0"],
     "MODEL.DA.INSTANCE.DROPOUT = 1.0: must be in [0, 1)"),
    (SYNTHETIC_DA, ["MODEL.DA.LOSS_WEIGHT", "-0.1"], "MODEL.DA.LOSS_WEIGHT = -0.1: must be >= 0"),
    (SYNTHETIC_DA, ["MODEL.DA.INSTANCE.LOSS_WEIGHT", "-1.0"],
     "MODEL.DA.INSTANCE.LOSS_WEIGHT = -1.0: must be >= 0"),
    (SYNTHETIC_DA, ["MODEL.DA.GRL_GAMMA", "0.0"], "MODEL.DA.GRL_GAMMA = 0.0: must be > 0"),
    (SYNTHETIC_DA, ["SOLVER.WEIGHT_AVERAGING.PERIOD", "0"],
     "SOLVER.WEIGHT_AVERAGING.PERIOD = 0: must be > 0"),
    (SYNTHETIC_DA, ["MODEL.DA.INSTANCE.ENABLED", "False"],
     "MODEL.DA.CONSISTENCY.ENABLED = True: needs MODEL.DA.IMAGE.ENABLED and "
     "MODEL.DA.INSTANCE.ENABLED"),
    (SYNTHETIC_DA, ["SOLVER.WEIGHT_AVERAGING.START_ITER", "2000"],
     "SOLVER.WEIGHT_AVERAGING.START_ITER = 2000: must be in [0, SOLVER.MAX_ITER = 1500]"),
])
def test_a_bad_config_value_is_a_config_error_naming_its_key(config, opts, message):
    """Raised as the config loads or is checked for training; train_net reports a ConfigError
    in one ``error:`` line (test_train_net's bad-input cases)."""
    with pytest.raises(ConfigError) as error:
        check_adaptation_data(load_config(str(config), opts))
    assert str(error.value).startswith(message.rstrip("$"))
    assert not message.endswith("$") or str(error.value) == message[:-1]


def test_a_misspelt_key_in_a_config_file_is_named_with_the_keys_it_may_mean(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text(f'_BASE_: "{SYNTHETIC_DA}"\nMODEL:\n  DA:\n    LOSS_WIEGHT: 1.0\n')
    with pytest.raises(ConfigError) as error:
        load_config(str(config))
    assert str(error.value).startswith(f"{config}: Non-existent config key: MODEL.DA.LOSS_WIEGHT "
                                       f"(did you mean 'MODEL.DA.LOSS_WEIGHT' or ")


def test_steps_after_the_last_are_accepted_as_detectron2_drops_them():
    cfg = load_config(str(SYNTHETIC_FPN), ["SOLVER.MAX_ITER", "10", "SOLVER.STEPS", "(5, 10, 20)",
                                           "SOLVER.LR_SCHEDULER_NAME", "WarmupCosineLR"])
    assert cfg.SOLVER.STEPS == (5, 10, 20)  # unused by the cosine schedule
    load_config(str(SYNTHETIC_FPN), ["SOLVER.MAX_ITER", "10", "SOLVER.STEPS", "(5, 12, 20)"])


def test_scaling_to_more_processes_scales_the_target_batch_and_the_adaptation_steps():
    opts = ["SOLVER.REFERENCE_WORLD_SIZE", "2", "SOLVER.IMS_PER_BATCH", "4",
            "SOLVER.TARGET_IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "1000", "MODEL.DA.START_ITER",
            "200", "SOLVER.WEIGHT_AVERAGING.START_ITER", "500", "SOLVER.WEIGHT_AVERAGING.PERIOD",
            "100"]
    scaled = DATrainer.auto_scale_workers(load_config(str(SYNTHETIC_DA), opts), 4)
    averaging = scaled.SOLVER.WEIGHT_AVERAGING
    assert (scaled.SOLVER.IMS_PER_BATCH, scaled.SOLVER.TARGET_IMS_PER_BATCH, scaled.SOLVER.MAX_ITER,
            scaled.MODEL.DA.START_ITER, averaging.START_ITER, averaging.PERIOD) == (
        8, 4, 500, 100, 250, 50)
    # a period of 1 step stays 1 (rounded, 1/4 would be 0: no step averaged)
    period_1 = DATrainer.auto_scale_workers(load_config(str(SYNTHETIC_DA), opts + [
        "SOLVER.WEIGHT_AVERAGING.PERIOD", "1"]), 8)
    assert period_1.SOLVER.WEIGHT_AVERAGING.PERIOD == 1
    with pytest.raises(ConfigError, match="SOLVER.TARGET_IMS_PER_BATCH = 3: must be a multiple "
                                          "of SOLVER.REFERENCE_WORLD_SIZE = 2"):
        load_config(str(SYNTHETIC_DA), opts + ["SOLVER.TARGET_IMS_PER_BATCH", "3"])


def stand_in_weights(model):
    """The state dict of torchvision's ``model`` (e.g. ``vgg16``) with each tensor one zero
    expanded to its shape: the names and shapes a converter checks, saved in a few KB where
    VGG16's weights take 528 MB."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in model(weights=None).state_dict().items()}
    return {k: torch.zeros(()).expand(shape) for k, shape in shapes.items()}


def test_vgg16_gives_conv5_at_the_stride_it_declares():
    backbone = VGG16()
    features = backbone(torch.zeros(1, 3, 64, 96))[VGG_FEATURE]
    stride = backbone.output_shape()[VGG_FEATURE].stride
    assert stride == 16 and features.shape == (1, 512, 64 // stride, 96 // stride)


def test_convert_vgg16_names_an_input_that_is_no_torchvision_vgg16(tmp_path):
    weights = stand_in_weights(vgg16)
    inputs = {"missing.pth": None, "text.pth": "not weights",
              "partial.pth": {k: v for k, v in weights.items() if k.startswith("features.0.")},
              "vgg16_bn.pth": stand_in_weights(vgg16_bn),
              "narrow.pth": {**weights, "classifier.3.weight": torch.zeros(10, 4096)},
              "numbers.pth": {k: 0 for k in weights}, "tensor.pth": torch.zeros(3)}
    errors = {}
    for name, content in inputs.items():
        if isinstance(content, str):
            (tmp_path / name).write_text(content)
        elif content is not None:
            torch.save(content, tmp_path / name)
        errors[name] = exit_of("tools/convert_vgg16.py", tmp_path / name, tmp_path / "out.pth")
    assert not (tmp_path / "out.pth").exists()
    prefix = f"error: {tmp_path}/"
    assert errors == {
        "missing.pth": f"{prefix}missing.pth: no such file",
        "text.pth": f"{prefix}text.pth: not a readable weights file (UnpicklingError)",
        "partial.pth": f"{prefix}partial.pth: not a torchvision VGG16 state dict: 28 of its 30 "
                       f"tensors missing (features.2.weight, features.2.bias, features.5.weight, ...)",
        "vgg16_bn.pth": f"{prefix}vgg16_bn.pth: not a torchvision VGG16 state dict: 10 of its "
                        f"30 tensors missing (features.2.weight, features.2.bias, "
                        f"features.5.weight, ...)",
        "narrow.pth": f"{prefix}narrow.pth: not a torchvision VGG16 state dict: "
                      f"classifier.3.weight is (10, 4096), VGG16's is (4096, 4096)",
        "numbers.pth": f"{prefix}numbers.pth: not a torchvision VGG16 state dict: "
                       f"features.0.weight is not a tensor (int)",
        "tensor.pth": f"{prefix}tensor.pth: not a torchvision VGG16 state dict: a Tensor"}

    torch.save(weights, tmp_path / "vgg16.pth")
    assert exit_of("tools/convert_vgg16.py", tmp_path / "vgg16.pth", tmp_path) == (
        f"error: {tmp_path} is a folder; give the output file's path")
    assert exit_of("tools/convert_vgg16.py", tmp_path / "vgg16.pth",
                   tmp_path / "text.pth" / "out.pth") == (
        f"error: {tmp_path}/text.pth/out.pth: its folder cannot be made (File exists: "
        f"{tmp_path}/text.pth)")
    (tmp_path / "out.pth").write_text("an earlier file")
    assert exit_of("tools/convert_vgg16.py", tmp_path / "vgg16.pth", tmp_path / "out.pth") is None
    (earlier,) = tmp_path.glob("out.*.pth")  # kept under the time it was written
    assert earlier.read_text() == "an earlier file"
    assert torch.load(tmp_path / "out.pth")["model"].keys() == (
        torchvision_vgg16_to_detectron2(weights).keys())


def test_the_real_benchmark_configs_scale_to_the_readmes_eight_processes():
    for config, (batch, lr, max_iter) in {
            "cityscapes_to_foggy/da_faster_rcnn_VGG16.yaml": (8, 0.008, 8750),
            "cityscapes_to_foggy/faster_rcnn_VGG16_source_only.yaml": (8, 0.008, 8750),
            "cityscapes_to_foggy/da_faster_rcnn_R50_FPN.yaml": (16, 0.04, 6250)}.items():
        scaled = DATrainer.auto_scale_workers(load_config(str(REPO / "configs" / config)), 8)
        solver = scaled.SOLVER
        assert (solver.IMS_PER_BATCH, solver.BASE_LR, solver.MAX_ITER) == (
            batch, pytest.approx(lr), max_iter), config
        if scaled.DATASETS.TARGET_TRAIN:
            assert solver.TARGET_IMS_PER_BATCH == batch, config


@pytest.mark.parametrize("key", ["MODEL.RESNETS.NORM", "MODEL.FPN.NORM", "MODEL.ROI_BOX_HEAD.NORM"])
def test_batch_statistics_norms_are_refused_for_adaptation_only(key):
    for norm in ("BN", "SyncBN", "naiveSyncBN"):  # detectron2's norms that use batch statistics
        with pytest.raises(ConfigError, match=f"^{key} = {norm!r}: batch statistics would mix"):
            check_adaptation_data(load_config(str(SYNTHETIC_DA), [key, norm]))
        check_adaptation_data(load_config(str(SYNTHETIC_DA), [  # no target images: no mixing
            key, norm, "MODEL.META_ARCHITECTURE", "GeneralizedRCNN", "MODEL.ROI_HEADS.NAME",
            "StandardROIHeads", "DATASETS.TARGET_TRAIN", "()"]))
    for norm in ("FrozenBN", "GN", ""):
        check_adaptation_data(load_config(str(SYNTHETIC_DA), [key, norm]))


def test_adaptation_settings_have_source_only_twins():
    for setting in ("sim10k_to_cityscapes", "kitti_to_cityscapes", "cityscapes_to_kitti",
                    "cityscapes_to_foggy"):
        da = load_config(str(REPO / "configs" / setting / "da_faster_rcnn_VGG16.yaml"))
        twin = load_config(str(REPO / "configs" / setting / "faster_rcnn_VGG16_source_only.yaml"))
        assert da.DATASETS.TRAIN == twin.DATASETS.TRAIN and da.DATASETS.TEST == twin.DATASETS.TEST
        assert twin.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and not twin.DATASETS.TARGET_TRAIN
        assert (da.MODEL.DA.LOSS_WEIGHT, da.SOLVER.BASE_LR, da.SOLVER.IMS_PER_BATCH,
                da.SOLVER.TARGET_IMS_PER_BATCH, da.INPUT.MIN_SIZE_TRAIN) == (0.1, 0.001, 1, 1, (600,))


def test_vgg16_starts_from_a_torchvision_checkpoint_and_trains(tmp_path):
    torchvision_weights = vgg16(weights=None).state_dict()
    torch.save(torchvision_weights, tmp_path / "vgg16-torchvision.pth")  # as torchvision's file
    converted = tmp_path / "output" / "vgg16.pth"  # into a folder not there yet
    run_script_here("tools/convert_vgg16.py", tmp_path / "vgg16-torchvision.pth", converted)
    cfg = load_config(str(REPO / "configs" / "cityscapes_to_foggy" / "da_faster_rcnn_VGG16.yaml"),
                      ["MODEL.DEVICE", "cpu", "MODEL.ROI_HEADS.NUM_CLASSES", "3",
                       "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "8",
                       "MODEL.DA.INSTANCE.REGIONS_PER_IMAGE", "4",
                       "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "160"])
    model = build_model(cfg)
    checkpointer = DACheckpointer(model)  # weights_only: the converted file needs no unpickling
    checkpointer.load(str(converted))
    checkpointer.require_some_weights()
    frozen, trained = model.backbone.features[0].weight, model.backbone.features[10].weight
    assert torch.equal(frozen, torchvision_weights["features.0.weight"])
    assert torch.equal(trained, torchvision_weights["features.10.weight"])
    assert torch.equal(model.roi_heads.box_head.fc2.weight, torchvision_weights["classifier.3.weight"])
    assert not frozen.requires_grad and trained.requires_grad

    mapper = DatasetMapper(cfg, is_train=True)
    batch = [dict(mapper(copy.deepcopy(d)), domain=domain) for domain, name in
             ((0, "synthetic_clean_val"), (1, "synthetic_foggy_val"))
             for d in DatasetCatalog.get(name)[:1]]
    with EventStorage():
        losses = model.train()(batch)
    assert {"loss_cls", "loss_da_image", "loss_da_instance", "loss_da_consistency"} <= set(losses)
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    torch.optim.SGD(model.parameters(), lr=0.01).step()  # one step: the trainable layers move
    assert torch.equal(frozen, torchvision_weights["features.0.weight"])
    assert not torch.equal(trained, torchvision_weights["features.10.weight"])
    assert model.instance_classifier.fc1.in_features == 4096
