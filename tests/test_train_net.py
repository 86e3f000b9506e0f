"""tools/train_net.py end to end on the synthetic domains: training, checkpoints, evaluation,
--eval-only, --resume and clear errors for bad input; tools/infer.py on the trained model."""
import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, Instances
from PIL import Image
from pycocotools.coco import COCO
from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

from conftest import (REPO, SMALL_IMAGES, SYNTHETIC_DA, SYNTHETIC_FPN, exit_of, first_images,
                      load_script, metrics, run_script, run_train_net, run_train_net_here,
                      wandb_records)
from da_detect.config import load_config
from da_detect.engine.output_dir import keep_earlier_predictions, predictions_folder
from da_detect.evaluation import COCOAP50Evaluator

VAL = "synthetic_foggy_val_first_10"  # what the runs of this module evaluate on, see ``quick``


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Overrides for short runs on small images that evaluate on VAL."""
    names, domain = first_images(10, tmp_path_factory.mktemp("val"), "synthetic_foggy_val")
    assert names == [VAL]
    return [*SMALL_IMAGES, "SOLVER.WARMUP_ITERS", "10", "SOLVER.STEPS", "()",
            "DATALOADER.NUM_WORKERS", "0", "WANDB.ENABLED", "False", *domain,
            "DATASETS.TEST", f"('{VAL}',)"]


def infer_command(*args):
    """tools/infer.py's command line on the synthetic FPN config, at the image size the
    ``trained`` run trained at."""
    return ["tools/infer.py", "--config-file", SYNTHETIC_FPN, *args, *SMALL_IMAGES]


def visualize_command(source_only, adapted, *args):
    """tools/visualize.py's command line on the synthetic DA config, comparing two checkpoints,
    at the image size the ``trained`` run trained at."""
    return ["tools/visualize.py", "--config-file", SYNTHETIC_DA, "--source-only", source_only,
            "--adapted", adapted, *args, *SMALL_IMAGES]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, quick):
    """A 60-iteration source-only run with a checkpoint at iteration 40, evaluated on VAL at the
    end."""
    out = tmp_path_factory.mktemp("train")
    result = run_train_net_here("--config-file", SYNTHETIC_FPN, *quick, "SOLVER.MAX_ITER", "60",
                                "SOLVER.CHECKPOINT_PERIOD", "40", "OUTPUT_DIR", out)
    return out, result


def test_training_loss_falls(trained):
    out, _ = trained
    logged = [m for m in metrics(out) if "total_loss" in m]
    assert [m["iteration"] for m in logged] == [19, 39, 59]
    assert logged[-1]["total_loss"] < logged[0]["total_loss"]
    # The RPN learns objectness first; the ROI losses grow for a while as its proposals improve.
    assert logged[-1]["loss_rpn_cls"] < 0.5 * logged[0]["loss_rpn_cls"]


def test_training_writes_checkpoints_and_per_class_ap50(trained):
    out, result = trained
    assert (out / "model_0000039.pth").exists() and (out / "model_final.pth").exists()
    assert (out / "last_checkpoint").read_text() == "model_final.pth"
    log = (out / "log.txt").read_text()
    assert "Per-category bbox AP50" in log
    results = json.loads((out / "results.json").read_text())[VAL]["bbox"]
    for cls in ("car", "person", "bus"):
        assert 0 <= results[f"AP50-{cls}"] <= 100
    assert metrics(out)[-1]["bbox/AP50-car"] == results["AP50-car"]


def test_eval_only_reproduces_the_numbers(trained, quick, tmp_path):
    out, _ = trained
    # as in the training run's OUTPUT_DIR: its config, results and predictions
    shutil.copy(out / "config.yaml", tmp_path)
    shutil.copy(out / "results.json", tmp_path)
    shutil.copytree(out / "inference", tmp_path / "inference")
    (tmp_path / "config.eval-only.yaml").write_text("an earlier evaluation's")
    predictions = tmp_path / "inference" / VAL / "coco_instances_results.json"
    predictions.write_text("[]")  # an earlier evaluation's, so that it differs from the new one
    shutil.copy(out / "last_checkpoint", tmp_path)
    (tmp_path / "model_final.pth").write_bytes(b"the run's own model, not evaluated")
    result = run_train_net_here("--config-file", SYNTHETIC_FPN, "--eval-only", *quick,
                                "MODEL.WEIGHTS", out / "model_final.pth", "OUTPUT_DIR", tmp_path)
    assert (f"--eval-only evaluates MODEL.WEIGHTS {out / 'model_final.pth'}, not OUTPUT_DIR's "
            f"last checkpoint {tmp_path / 'model_final.pth'}") in result.stdout + result.stderr
    after_training = json.loads((out / "results.json").read_text())
    evaluated = json.loads((tmp_path / "results.json").read_text())
    assert evaluated == after_training
    # the training run's config is kept; the evaluation's is written beside it
    assert (tmp_path / "config.yaml").read_bytes() == (out / "config.yaml").read_bytes()
    eval_config = (tmp_path / "config.eval-only.yaml").read_text()
    assert f"WEIGHTS: {out / 'model_final.pth'}" in eval_config
    # every file an earlier run wrote is kept, renamed after its time
    for kept, earlier in (("results.*.json", (out / "results.json").read_text()),
                          ("config.eval-only.*.yaml", "an earlier evaluation's"),
                          (f"inference/{VAL}/coco_instances_results.*.json", "[]")):
        assert [p.read_text() for p in tmp_path.glob(kept)] == [earlier], kept
    earlier_raw = list(predictions.parent.glob("instances_predictions.*.pth"))
    assert [p.read_bytes() for p in earlier_raw] == [
        (out / "inference" / VAL / "instances_predictions.pth").read_bytes()]
    assert json.loads(predictions.read_text())  # the new evaluation's detections


def test_eval_only_names_what_is_wrong_rather_than_a_sound_checkpoint(trained, quick, tmp_path):
    out, _ = trained
    for name in ("last_checkpoint", "model_final.pth", "config.yaml"):  # a training run's
        shutil.copy(out / name, tmp_path)
    (tmp_path / "config.eval-only.yaml").write_text("an earlier evaluation's")
    frames = tmp_path / "frames"  # unlabeled images
    frames.mkdir()
    Image.new("RGB", (80, 64)).save(frames / "0.png")
    for opts, message in (
            ([], f"--eval-only: MODEL.WEIGHTS is empty: nothing to evaluate (--resume evaluates "
                 f"OUTPUT_DIR's last checkpoint, {tmp_path / 'model_final.pth'})"),
            (["MODEL.WEIGHTS", out / "model_final.pth", "MODEL.ROI_HEADS.NUM_CLASSES", "5"],
             "MODEL.ROI_HEADS.NUM_CLASSES = 5, but 'synthetic_clean_train' has 3 classes"),
            (["MODEL.WEIGHTS", out / "model_final.pth", "DATASETS.IMAGE_FOLDER_DOMAINS",
              f"[['frames', '{frames}']]", "DATASETS.TEST", "('frames',)"],
             "DATASETS.TEST: 'frames' is unlabeled (no classes, no boxes)")):
        result = run_train_net_here("--config-file", SYNTHETIC_FPN, "--eval-only", *quick,
                                    "OUTPUT_DIR", tmp_path, *opts, check=False)
        assert result.returncode == 1
        assert result.stderr.strip().splitlines()[-1].startswith(f"error: {message}")
    # an evaluation that did not run leaves the config files as they were
    assert (tmp_path / "config.yaml").read_bytes() == (out / "config.yaml").read_bytes()
    assert [p.read_text() for p in tmp_path.glob("config.eval-only*.yaml")] == [
        "an earlier evaluation's"]


def test_a_new_run_refuses_an_output_dir_with_checkpoints(trained, quick, tmp_path):
    out, _ = trained
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    result = run_train_net_here("--config-file", SYNTHETIC_FPN, *quick, "SOLVER.MAX_ITER", "60",
                                "OUTPUT_DIR", out, check=False)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: OUTPUT_DIR {out} holds an earlier run's checkpoints")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before

    # a run killed between its first checkpoint and last_checkpoint, in a folder whose name
    # reads as a glob pattern: the checkpoint is kept too
    killed = tmp_path / "run[1]"
    killed.mkdir()
    os.link(out / "model_0000039.pth", killed / "model_0000039.pth")
    result = run_train_net_here("--config-file", SYNTHETIC_FPN, *quick, "OUTPUT_DIR", killed,
                                check=False)
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: OUTPUT_DIR {killed} holds an earlier run's checkpoints "
        f"({killed / 'model_0000039.pth'})")
    assert [p.name for p in killed.iterdir()] == ["model_0000039.pth"]


def test_resume_continues_from_the_last_checkpoint_and_logs_each_value_once(quick, tmp_path):
    common = [*quick, "WANDB.ENABLED", "True", "WANDB.MODE", "offline", "TEST.EVAL_PERIOD", "10",
              "OUTPUT_DIR", tmp_path]
    run_train_net("--config-file", SYNTHETIC_DA, *common, "SOLVER.MAX_ITER", "20")
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    finished = (tmp_path / "model_final.pth").read_bytes()
    predictions = tmp_path / "inference" / VAL / "coco_instances_results.json"
    finished_predictions = predictions.read_text()
    # the last checkpoint holds the values logged at steps 9 (evaluation) and 19, written at 19
    run_train_net("--config-file", SYNTHETIC_DA, "--resume", *common, "SOLVER.MAX_ITER", "30")
    log = (tmp_path / "log.txt").read_text()
    assert "Starting training from iteration 20" in log
    # the finished run's model and final predictions are kept, not replaced
    kept_model, = tmp_path.glob("model_final.*.pth")
    assert "its model_final.pth is kept as model_final.20" in log
    assert kept_model.read_bytes() == finished != (tmp_path / "model_final.pth").read_bytes()
    assert [p.read_text() for p in predictions.parent.glob("coco_instances_results.*.json")] == [
        finished_predictions]
    assert "--resume with other values than the run's config.yaml: SOLVER.MAX_ITER: 20 -> 30. " \
           "The steps from here on take them; the earlier config.yaml is kept as config.20" in log
    by_iteration = {m["iteration"]: m for m in metrics(tmp_path)}
    # evaluations at steps 9, 20 and 30 (the final ones count the finished steps)
    assert sorted(m["iteration"] for m in metrics(tmp_path)) == [9, 19, 20, 29, 30]
    assert all(isinstance(i, int) for i in by_iteration)
    assert {"bbox/AP50" in by_iteration[i] for i in (9, 20, 30)} == {True}
    assert {"loss_da_consistency" in by_iteration[i] for i in (19, 29)} == {True}
    # nor to TensorBoard (an event file per run) or wandb (an offline run per run)
    scalars = [(value.tag, event.step) for events in sorted(tmp_path.glob("events.out.tfevents.*"))
               for event in EventFileLoader(str(events)).Load() for value in event.summary.value]
    wandb_runs = sorted(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    history = [(item.key or "/".join(item.nested_key), record.history.step.num)
               for run in wandb_runs for record in wandb_records(run)
               if record.WhichOneof("record_type") == "history"
               for item in record.history.item if not item.key.startswith("_")]
    assert len(wandb_runs) == 2
    for logged in (scalars, history):
        assert ("total_loss", 29) in logged and ("bbox/AP50", 30) in logged
        assert len(logged) == len(set(logged))
    # the first run's config.yaml (20 steps) is kept beside the resumed run's (30)
    kept = list(tmp_path.glob("config.*.yaml"))
    assert len(kept) == 1 and "MAX_ITER: 20" in kept[0].read_text()
    assert "MAX_ITER: 30" in (tmp_path / "config.yaml").read_text()
    # resuming the finished run: nothing trained, its final evaluation again, the earlier kept
    checkpoints = {p.name: p.read_bytes() for p in tmp_path.glob("*.pth")}
    results = (tmp_path / "results.json").read_text()
    again = run_train_net("--config-file", SYNTHETIC_DA, "--resume", *common,
                          "SOLVER.MAX_ITER", "30")
    assert "finished its SOLVER.MAX_ITER = 30 steps: nothing to train" in again.stdout
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.pth")} == checkpoints
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(results)
    assert results in [p.read_text() for p in tmp_path.glob("results.*.json")]
    assert list(tmp_path.glob("config.*.yaml")) == kept


def test_resuming_another_models_run_names_it_and_changes_nothing(trained, quick, tmp_path):
    out = tmp_path / "source_only"
    shutil.copytree(trained[0], out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "log.txt"}
    result = run_train_net_here("--config-file", SYNTHETIC_DA, "--resume", *quick,
                                "SOLVER.MAX_ITER", "70", "OUTPUT_DIR", out, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(
        f"error: {out}/model_final.pth: --resume goes on with the run in {out}, but this "
        f"checkpoint is of another model than the config's: it lacks ")
    assert "Set another OUTPUT_DIR, or start from its weights with MODEL.WEIGHTS" in result.stderr
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not list(out.glob("config.*.yaml"))


NEEDS_NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


# One case of each way train_net stops on bad input; test_configs checks the message of every
# bad config value, which train_net reports as the first case here.
@pytest.mark.parametrize("args,message", [
    (["--config-file", SYNTHETIC_FPN, "MODEL.NO_SUCH_KEY", "1"], "MODEL.NO_SUCH_KEY"),
    (["--config-file", SYNTHETIC_FPN, "SOLVER.MAX_ITER", "3", "--eval-only"],
     "command-line override --eval-only: a flag among the KEY VALUE overrides (give it before "
     "them)"),
    (["--config-file", SYNTHETIC_DA, "SOLVER.MAX_ITER", "20", "MODEL.DA.START_ITER", "20"],
     "MODEL.DA.START_ITER = 20: adaptation would start after the last step (SOLVER.MAX_ITER = "
     "20)"),
    (["--config-file", SYNTHETIC_DA, "MODEL.DA.IMAGE.IN_FEATURES", "['p7']"],  # as the model
     "MODEL.DA.IMAGE.IN_FEATURES: ['p7'] not among the backbone's outputs"),  # is built
    (["--config-file", SYNTHETIC_FPN, "MODEL.ROI_HEADS.NUM_CLASSES", "2"],
     "MODEL.ROI_HEADS.NUM_CLASSES = 2, but 'synthetic_clean_train' has 3 classes"),
    pytest.param(["--config-file", SYNTHETIC_FPN, "--num-machines", "2"],
                 "--num-machines 2 needs CUDA", marks=NEEDS_NO_GPU),
    pytest.param(["--config-file", SYNTHETIC_FPN, "MODEL.DEVICE", "cuda"],
                 "MODEL.DEVICE cuda: this machine has no CUDA GPU", marks=NEEDS_NO_GPU),
    pytest.param(["--config-file", SYNTHETIC_FPN, "MODEL.DEVICE", "cuda:0"],
                 "MODEL.DEVICE cuda:0: this machine has no CUDA GPU", marks=NEEDS_NO_GPU),
    (["--config-file", SYNTHETIC_FPN, "DATASETS.TRAIN", "()"],
     "DATASETS.TRAIN is empty: its first split names the classes the model detects"),
    (["--config-file", SYNTHETIC_FPN, "OUTPUT_DIR", "a_file"],
     "OUTPUT_DIR a_file: cannot be made a folder (File exists: a_file)"),
    (["--config-file", SYNTHETIC_FPN, "--eval-only"], "--eval-only: MODEL.WEIGHTS is empty"),
    (["OUTPUT_DIR", "out"], "no config file given (--config-file FILE)"),
    (["--config-file", SYNTHETIC_FPN, "--num-gpus", "0"], "--num-gpus 0: must be 1 or more"),
    (["--config-file", SYNTHETIC_FPN, "--machine-rank", "1"],
     "--machine-rank 1: must be in [0, --num-machines 1)"),
    (["--config-file", SYNTHETIC_FPN, "--eval-only", "DATASETS.TEST", "()"],
     "--eval-only: DATASETS.TEST is empty: no split to evaluate on"),
    (["--config-file", SYNTHETIC_FPN, "--eval-only", "MODEL.WEIGHTS", "output/no-such.pth"],
     "output/no-such.pth: no such checkpoint file"),
])
def test_bad_input_gives_one_clear_error_line(args, message, tmp_path):
    (tmp_path / "a_file").touch()
    # in a folder of its own: the configs' OUTPUT_DIR, ./output, is made before some checks
    result = run_train_net_here(*args, cwd=tmp_path, check=False)
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and message in last_line
    assert "Traceback" not in result.stderr


def test_a_file_in_the_way_of_a_predictions_folder_stops_the_run_before_it_trains(tmp_path):
    (tmp_path / "inference").touch()  # where the evaluation would make inference/<split>/
    result = run_train_net_here("--config-file", SYNTHETIC_FPN, *SMALL_IMAGES, "SOLVER.MAX_ITER",
                                "1", "DATASETS.TEST", "('synthetic_foggy_val',)", "WANDB.ENABLED",
                                "False", "OUTPUT_DIR", tmp_path, check=False)
    folder = tmp_path / "inference" / "synthetic_foggy_val"
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == (
        f"error: {folder}, where the evaluation of synthetic_foggy_val writes its predictions: "
        f"cannot be made a folder (Not a directory: {folder})")
    assert [p.name for p in tmp_path.iterdir()] == ["inference"]  # no config, log or checkpoint


@pytest.mark.parametrize("name", ["config.yaml", "config.eval-only.yaml", "log.txt",
                                  "metrics.json", "results.json"])
def test_a_folder_in_the_way_of_a_file_the_run_writes_stops_it_before_it_trains(tmp_path, name):
    (tmp_path / name).mkdir()
    evaluation = ["--eval-only"] if name == "config.eval-only.yaml" else []
    result = run_train_net_here("--config-file", SYNTHETIC_FPN, *evaluation, *SMALL_IMAGES,
                                "SOLVER.MAX_ITER", "1", "WANDB.ENABLED", "False",
                                "OUTPUT_DIR", tmp_path, check=False)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / name}: a folder, where the run writes its file {name}")
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no config, log or checkpoint


def test_an_evaluation_keeps_every_splits_earlier_predictions(tmp_path):
    cfg = load_config(str(SYNTHETIC_FPN), ["OUTPUT_DIR", str(tmp_path)])
    assert len(cfg.DATASETS.TEST) == 2
    for split in cfg.DATASETS.TEST:
        for name in COCOAP50Evaluator.PREDICTION_FILES:
            Path(predictions_folder(cfg, split), name).parent.mkdir(parents=True, exist_ok=True)
            Path(predictions_folder(cfg, split), name).write_text(f"{split} {name}")
    keep_earlier_predictions(cfg)
    for split in cfg.DATASETS.TEST:
        kept = sorted(p.read_text() for p in Path(predictions_folder(cfg, split)).iterdir())
        assert kept == sorted(f"{split} {name}" for name in COCOAP50Evaluator.PREDICTION_FILES)
        for name in COCOAP50Evaluator.PREDICTION_FILES:  # its name free for the new evaluation
            assert not Path(predictions_folder(cfg, split), name).exists()


def test_infer_writes_coco_detections_and_drawn_images(trained, tmp_path):
    out, _ = trained
    folder = tmp_path / "frames"
    folder.mkdir()
    for record in DatasetCatalog.get("synthetic_foggy_val")[:2]:
        shutil.copy(record["file_name"], folder)
    first_png = sorted(folder.iterdir())[0]
    Image.open(first_png).save(first_png.with_suffix(".jpg"))  # the same name but its suffix
    good = sorted(p.name for p in folder.iterdir())
    first = (folder / good[0]).read_bytes()
    (folder / "truncated.png").write_bytes(first[:len(first) // 2])  # its header reads fine
    result = run_script(*infer_command("--input", folder, "--output", tmp_path / "out",
                                       "--score-threshold", "0.05",
                                       "MODEL.WEIGHTS", out / "model_final.pth"), check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{folder / 'truncated.png'}: unreadable image" in result.stderr
    assert "images (1 skipped, named above)" in result.stdout
    coco = COCO(str(tmp_path / "out" / "detections.json"))
    assert sorted(image["file_name"] for image in coco.dataset["images"]) == good
    assert [c["name"] for c in coco.dataset["categories"]] == ["car", "person", "bus"]
    assert coco.dataset["annotations"], "a model trained 60 iterations finds something at 0.05"
    for annotation in coco.dataset["annotations"]:
        image = coco.imgs[annotation["image_id"]]
        x, y, w, h = annotation["bbox"]
        assert annotation["score"] >= 0.05 and w > 0 and h > 0
        assert -1 <= x and x + w <= image["width"] + 1 and -1 <= y and y + h <= image["height"] + 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
        good + ["detections.json"])  # one drawing per image, under the image's own name
    for image in coco.dataset["images"]:
        drawn = Image.open(tmp_path / "out" / image["file_name"])
        assert drawn.size == (image["width"], image["height"])


def test_infer_writes_only_the_detections_at_or_above_its_score_threshold():
    infer = load_script("tools/infer.py")
    detections = Instances((20, 30))
    detections.pred_boxes = Boxes(torch.tensor([[1.0, 2, 11, 12]] * 3))
    detections.scores = torch.tensor([0.75, 0.5, 0.25])
    detections.pred_classes = torch.tensor([0, 1, 0])
    coco = infer.coco_detections([{"file_name": "a/b.png", "width": 30, "height": 20}],
                                 [detections], ["car", "bus"], [3, 7], score_threshold=0.5)
    assert [(a["score"], a["category_id"]) for a in coco["annotations"]] == [(0.75, 3), (0.5, 7)]
    assert coco["images"] == [{"id": 1, "file_name": "b.png", "width": 30, "height": 20}]


def test_predictor_takes_images_in_the_configs_channel_order(trained):
    from detectron2.data import DatasetMapper
    from detectron2.data.detection_utils import read_image

    from da_detect.config import load_config
    from da_detect.engine.predictor import Predictor

    out, _ = trained
    cfg = load_config(str(SYNTHETIC_FPN), ["MODEL.WEIGHTS", str(out / "model_final.pth"),
                                           "INPUT.FORMAT", "RGB",  # as the VGG16 configs
                                           *SMALL_IMAGES])
    predictor = Predictor(cfg)
    record = DatasetCatalog.get("synthetic_foggy_val")[0]
    with torch.no_grad():  # the evaluation's path: the test loader's mapper reads INPUT.FORMAT
        evaluated = predictor.model([DatasetMapper(cfg, is_train=False)(record)])[0]["instances"]
    predicted = predictor(read_image(record["file_name"], format="RGB"))["instances"]
    assert len(evaluated) > 0
    assert torch.equal(predicted.pred_classes, evaluated.pred_classes)
    assert torch.allclose(predicted.pred_boxes.tensor, evaluated.pred_boxes.tensor)


def test_infer_gives_a_coco_json_splits_own_category_ids(trained, tmp_path):
    out, _ = trained
    DatasetCatalog.get("synthetic_foggy_val")  # generated on first use
    metadata = MetadataCatalog.get("synthetic_foggy_val")
    val, images = json.loads(Path(metadata.json_file).read_text()), Path(metadata.image_root)
    own_ids = {1: 3, 2: 7, 3: 11}  # not 1..K: detections must name these ids
    val["categories"] = [dict(c, id=own_ids[c["id"]]) for c in val["categories"]]
    for annotation in val["annotations"]:
        annotation["category_id"] = own_ids[annotation["category_id"]]
    (tmp_path / "val.json").write_text(json.dumps(val))
    folder = tmp_path / "frames"
    folder.mkdir()
    shutil.copy(images / val["images"][0]["file_name"], folder)
    result = run_script(*infer_command(
        "--input", folder, "--output", tmp_path / "out", "--score-threshold", "0.05",
        "MODEL.WEIGHTS", out / "model_final.pth",
        "DATASETS.COCO_DOMAINS", f"[['own_ids', '{tmp_path / 'val.json'}', '{images}']]",
        "DATASETS.TRAIN", "('own_ids',)"), check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    coco = COCO(str(tmp_path / "out" / "detections.json"))
    assert [(c["id"], c["name"]) for c in coco.dataset["categories"]] == [
        (3, "car"), (7, "person"), (11, "bus")]
    assert coco.dataset["annotations"]
    assert {a["category_id"] for a in coco.dataset["annotations"]} <= {3, 7, 11}


def test_infer_refuses_to_draw_over_its_input_or_to_run_without_weights(trained, tmp_path,
                                                                         capsys):
    out, _ = trained
    image = Path(DatasetCatalog.get("synthetic_foggy_val")[0]["file_name"])
    folder = tmp_path / "frames"
    folder.mkdir()
    shutil.copy(image, folder)
    weights = ["MODEL.WEIGHTS", out / "model_final.pth"]
    assert exit_of(*infer_command("--input", folder, "--output", folder / ".", *weights)) == 2
    assert f"argument --output: {folder} is not empty" in capsys.readouterr().err
    a_file = tmp_path / "notes.txt"
    a_file.write_text("kept")
    assert exit_of(*infer_command("--input", folder, "--output", a_file, *weights)) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert a_file.read_text() == "kept"
    assert exit_of(*infer_command("--input", folder, "--output", tmp_path / "out",
                                  "--score-threshold", "5", *weights)) == 2
    assert "argument --score-threshold: 5: must be a number from 0 to 1" in capsys.readouterr().err
    assert (folder / image.name).read_bytes() == image.read_bytes()
    assert exit_of(*infer_command("--input", folder, "--output", tmp_path / "out")).startswith(
        "error: MODEL.WEIGHTS is empty")
    assert exit_of(*infer_command("--input", folder, "--output", tmp_path / "out", *weights,
                                  "DATASETS.TRAIN", "()")) == (
        "error: DATASETS.TRAIN is empty: its first split names the classes the model detects")
    assert not (tmp_path / "out").exists()
    # an image whose header reads but whose pixels do not: nothing detected is a failure
    (folder / image.name).write_bytes(image.read_bytes()[:len(image.read_bytes()) // 2])
    assert exit_of(*infer_command("--input", folder, "--output", tmp_path / "out", *weights)) == (
        f"error: none of the images in {folder} could be decoded (1 named above)")
    assert not (tmp_path / "out").exists()


def test_visualize_writes_detection_panels_and_feature_plot(trained, tmp_path, capsys):
    out, _ = trained
    weights = out / "model_final.pth"
    drawn = run_script(*visualize_command(weights, weights, "--output", tmp_path, "--images", "2",
                                          "--features", "12", "--score-threshold", "0.05"))
    assert "source split synthetic_clean_val, target split synthetic_foggy_val\n" in drawn.stdout
    written = {p: p.read_bytes() for p in tmp_path.iterdir()}
    assert exit_of(*visualize_command(weights, weights, "--output", tmp_path,
                                      "--images", "1")) == 2
    assert f"argument --output: {tmp_path} is not empty" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == written
    assert exit_of(*visualize_command(weights, weights, "--output", tmp_path / "x",
                                      "--features", "1")) == 2
    assert capsys.readouterr().err.strip().endswith("argument --features: 1: must be at least 2")
    assert exit_of(*visualize_command(weights, weights, "--output", tmp_path / "x",
                                      "--source-split", "synthetic_clear_val")).startswith(
        "error: --source-split: unknown dataset name 'synthetic_clear_val' (did you mean "
        "'synthetic_clean_val'")
    # where DATASETS.TEST holds the target alone (as the real benchmarks' configs), the source
    # is DATASETS.TRAIN's first split; a split is not compared with itself
    assert exit_of(*visualize_command(weights, weights, "--output", tmp_path / "x",
                                      "--target-split", "synthetic_clean_train",
                                      "DATASETS.TEST", "('synthetic_foggy_val',)")) == (
        "error: the source and target splits are both 'synthetic_clean_train': the t-SNE would "
        "compare a split with itself (give --source-split or --target-split)")
    empty = tmp_path / "empty.pth"
    torch.save({"model": {}}, empty)
    assert exit_of(*visualize_command(weights, empty, "--output", tmp_path / "x")).startswith(
        f"error: {empty}: not a checkpoint of this model: it gives no weights for ")
    assert not (tmp_path / "x").exists()
    panels = sorted(tmp_path.glob("detections_*.png"))
    assert len(panels) == 2
    for png in panels + [tmp_path / "features.png"]:
        with Image.open(png) as image:
            assert image.format == "PNG" and image.width > 400 and image.height > 200


def test_adapting_to_an_image_folder_then_comparing_splits(trained, tmp_path):
    """The README's fine-tuning workflow: from a trained checkpoint, adapt to a folder of
    unlabeled images, then evaluate on several labeled splits in one --eval-only run."""
    out, _ = trained
    folder = tmp_path / "my_images"
    folder.mkdir()
    for record in DatasetCatalog.get("synthetic_foggy_train")[:6]:
        shutil.copy(record["file_name"], folder)
    config = REPO / "configs" / "synthetic" / "adapt_to_image_folder.yaml"
    common = ["DATASETS.IMAGE_FOLDER_DOMAINS", f"[['my_target_images', '{folder}']]",
              *SMALL_IMAGES, "DATALOADER.NUM_WORKERS", "0", "WANDB.ENABLED", "False",
              "OUTPUT_DIR", tmp_path / "adapted"]
    trained_files = sorted(out.iterdir())
    # --resume, as the benchmark starts its runs: a new folder's run starts from MODEL.WEIGHTS
    run_train_net_here("--config-file", config, "--resume", *common, "MODEL.WEIGHTS",
                       out / "model_final.pth", "SOLVER.MAX_ITER", "4", "DATASETS.TEST", "()")
    log = (tmp_path / "adapted" / "log.txt").read_text()
    assert "6 target images, 2 per step" in log
    assert sorted(out.iterdir()) == trained_files  # the model it started from, left as it was
    (clean, foggy), domains = first_images(10, tmp_path, "synthetic_clean_val",
                                           "synthetic_foggy_val")
    run_train_net_here("--config-file", config, "--eval-only", *common, *domains,
                       "MODEL.WEIGHTS", tmp_path / "adapted" / "model_final.pth",
                       "DATASETS.TEST", f"('{clean}', '{foggy}')")
    results = json.loads((tmp_path / "adapted" / "results.json").read_text())
    assert set(results) == {clean, foggy}
    log = (tmp_path / "adapted" / "log.txt").read_text()
    table = log[log.index("AP50 (%) by split:"):].splitlines()
    header = [cell.strip() for cell in table[1].split("|")[1:-1]]
    assert header == ["class", clean, foggy]
    bus_row = next(line for line in table if line.startswith("| bus"))
    assert f"{results[foggy]['bbox']['AP50-bus']:.1f}" in bus_row
