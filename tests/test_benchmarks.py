"""The benchmark commands end to end at toy sizes: their tables report what they measured."""
import argparse
import json
import math
import re

import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from conftest import (SMALL_IMAGES, SYNTHETIC_DA, SYNTHETIC_FPN, load_script, run_script,
                      run_script_here, untrained_weights)
from da_detect.argument_types import above_zero, at_least, fraction
from da_detect.config import load_config
from da_detect.evaluation.comparison import gap_closed

TINY = [*SMALL_IMAGES, "DATALOADER.NUM_WORKERS", "0"]


def table_rows(markdown):
    """First cell -> the other cells, for every row of a markdown table."""
    rows = {}
    for line in markdown.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_speed_benchmark_reports_both_modes_side_by_side(tmp_path):
    output = tmp_path / "speed.md"
    output.write_text("an earlier table\n")
    run_script("benchmarks/speed.py", "--config-file", SYNTHETIC_DA, "--warmup", "0",
             "--steps", "2", "--inference-repetitions", "1", "--loader-batches", "2",
             "--output", output, "WANDB.ENABLED", "False", "MODEL.WEIGHTS", "unused.pth", *TINY)
    text = output.read_text()
    assert "random initial weights (MODEL.WEIGHTS unused.pth not loaded" in text
    rows = table_rows(text)
    for measure in ("training, s per image", "training, peak memory (MiB)",
                    "inference, s per image"):
        plain, adapted, ratio = (float(v) for v in rows[measure])
        assert plain > 0 and adapted > 0
        assert float(ratio) == pytest.approx(adapted / plain, rel=0.02, abs=0.002)
    assert "2 source + 2 target images per adaptation step, 4 source images" in text
    assert "Plain and adapted predictions identical: yes." in text
    (earlier,) = tmp_path.glob("speed.*.md")  # kept under the time it was written
    assert earlier.read_text() == "an earlier table\n"
    # refused before it measures, not after
    result = run_script("benchmarks/speed.py", "--config-file", SYNTHETIC_DA, "--output",
                        output / "speed.md", check=False)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith(
        f"error: argument --output: {output}/speed.md cannot be written: {output} is a file")


def test_each_benchmark_variant_trains_what_its_name_says():
    benchmark = load_script("tools/benchmark_synthetic.py")
    configs = {variant: load_config(str(benchmark.CONFIGS / config))
               for variant, config in benchmark.VARIANTS.items()}
    for variant, cfg in configs.items():
        parts = set(variant.split("+"))
        adapts = variant in benchmark.ADAPTATION_VARIANTS
        assert (cfg.MODEL.META_ARCHITECTURE == "DomainAdaptiveRCNN") == adapts, variant
        if adapts:
            assert cfg.MODEL.DA.IMAGE.ENABLED == ("image" in parts), variant
            assert cfg.MODEL.DA.INSTANCE.ENABLED == ("instance" in parts), variant
            assert cfg.MODEL.DA.CONSISTENCY.ENABLED == ("consistency" in parts), variant
        assert bool(cfg.INPUT.ALBUMENTATIONS.SOURCE) == ("photometric" in parts), variant
    assert set(benchmark.DEFAULT_VARIANTS) == set(benchmark.VARIANTS) - {
        "image+instance+consistency+photometric"}
    assert (configs["image+instance+consistency+photometric"].INPUT.ALBUMENTATIONS.SOURCE
            == configs["photometric"].INPUT.ALBUMENTATIONS.SOURCE)


def test_gap_closed_is_the_share_of_source_only_to_oracle():
    means = {"source_only": 45, "image": 63, "oracle": 90}
    assert gap_closed(means) == pytest.approx({"source_only": 0, "image": 40, "oracle": 100})
    assert gap_closed({**means, "oracle": 45}) == {}  # no gap to close: no share to report
    assert gap_closed({**means, "oracle": 40}) == {}  # the oracle worse: no share either
    assert gap_closed({"source_only": 45, "image": 63}) == {}


def test_the_table_reports_each_column_from_its_runs():
    benchmark = load_script("tools/benchmark_synthetic.py")

    def run(target, car, source, seconds):
        return {"target": {"AP50": target, "AP50-car": car}, "source": {"AP50": source},
                "seconds_per_iter": seconds}

    runs = {"source_only": [run(60, 50, 90, 1.0), run(62, 54, 92, None)],  # one untimed
            "image": [run(70, 70, 80, 2.0), run(72, 70, 80, 4.0)],
            "oracle": [run(80, 80, 70, 1.0), run(82, 80, 70, 1.0)]}
    rows = table_rows(benchmark.table(runs, ["car"]))
    # mean ± the seeds' sample standard deviation; the gap closed by the target's means
    assert rows["source_only"] == ["61.0 ± 1.4", "52.0 ± 2.8", "91.0 ± 1.4", "0%", "1.00"]
    assert rows["image"] == ["71.0 ± 1.4", "70.0 ± 0.0", "80.0 ± 0.0", "50%", "3.00"]
    assert rows["oracle"] == ["81.0 ± 1.4", "80.0 ± 0.0", "70.0 ± 0.0", "100%", "1.00"]


def test_a_run_reports_the_target_and_source_splits_results(tmp_path):
    benchmark = load_script("tools/benchmark_synthetic.py")
    args = benchmark.parse_args(["--output", str(tmp_path), "--target", "wide_angle"])
    config, folder, opts = benchmark.stage2("source_only", 1, tmp_path / "w.pth", args)
    folder.mkdir(parents=True)
    benchmark.write_record(folder, config, opts, finished=True)
    (folder / "results.json").write_text(json.dumps({
        "synthetic_clean_val": {"bbox": {"AP50": 90.0, "APl": None}},
        "synthetic_wide_angle_val": {"bbox": {"AP50": 40.0, "APl": 30.0}}}))
    (folder / "metrics.json").write_text(json.dumps({"iteration": 19, "time": 0.5}) + "\n")
    result = benchmark.run("source_only", 1, tmp_path / "w.pth", args)
    assert result["target"] == {"AP50": 40.0, "APl": 30.0}
    assert result["source"]["AP50"] == 90.0 and math.isnan(result["source"]["APl"])  # null
    assert result["seconds_per_iter"] == 0.5
    # a run cut short, its results.json an earlier attempt's: not finished, trained again
    benchmark.write_record(folder, config, opts, finished=False)
    assert not benchmark.finished(config, folder, opts, "results.json")


def test_iteration_time_is_the_last_attempts(tmp_path):
    median_iteration_time = load_script("tools/benchmark_synthetic.py").median_iteration_time
    metrics = tmp_path / "metrics.json"
    cut_short = [{"iteration": i, "time": 9.0} for i in (19, 39)]
    # as detectron2 writes them: an evaluation at step 24, logged after step 39's line
    again = [{"iteration": 19, "time": 1.0}, {"iteration": 39, "time": 3.0},
             {"iteration": 24, "bbox/AP50": 40.0}, {"iteration": 59, "time": 4.0},
             {"iteration": 60, "bbox/AP50": 50.0}]
    metrics.write_text("".join(json.dumps(entry) + "\n" for entry in cut_short + again))
    assert median_iteration_time(metrics) == 3.0
    # an attempt whose first timed step is the last one logged before it: a new attempt too
    restarted = [{"iteration": 39, "time": 1.0}, {"iteration": 59, "time": 3.0}]
    metrics.write_text("".join(json.dumps(entry) + "\n" for entry in cut_short + restarted))
    assert median_iteration_time(metrics) == 2.0
    metrics.write_text(json.dumps({"iteration": 3, "bbox/AP50": 50.0}) + "\n")
    assert median_iteration_time(metrics) is None


def test_quick_presets_what_no_flag_sets():
    benchmark = load_script("tools/benchmark_synthetic.py")
    quick = vars(benchmark.parse_args(["--quick"]))
    assert {key: quick[key] for key in benchmark.QUICK} == {  # as the README gives them
        "variants": ["source_only", "image+instance+consistency", "oracle"], "seeds": [1],
        "pretrain_iters": 200, "iters": 100}
    args = benchmark.parse_args(["--quick", "--seeds", "2", "3", "--iters", "50"])
    assert (args.seeds, args.iters) == ([2, 3], 50)
    assert (args.variants, args.pretrain_iters) == (
        benchmark.QUICK["variants"], benchmark.QUICK["pretrain_iters"])
    full = benchmark.parse_args(["--seeds", "4"])
    assert (full.variants, full.seeds, full.pretrain_iters) == (
        benchmark.DEFAULT_VARIANTS, [4], 800)


def test_benchmark_overrides_are_checked_with_the_options_of_each_run(capsys):
    benchmark = load_script("tools/benchmark_synthetic.py")
    averaging_from_150 = ["--variants", "source_only", "oracle", "--pretrain-iters", "200",
                          "SOLVER.WEIGHT_AVERAGING.START_ITER", "150"]
    benchmark.parse_args(["--iters", "300", *averaging_from_150])  # within both stages' steps
    with pytest.raises(SystemExit):  # stage 2's 100 steps end before step 150
        benchmark.parse_args(["--iters", "100", *averaging_from_150])
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "error: source_only (faster_rcnn_R18_FPN_source_only.yaml): "
        "SOLVER.WEIGHT_AVERAGING.START_ITER = 150: must be in [0, SOLVER.MAX_ITER = 100]")


def test_the_tools_number_arguments_take_their_bounds():
    assert at_least(2)("2") == 2 and fraction("0") == 0.0 and fraction("1") == 1.0
    for parse, text in ((at_least(2), "1"), (fraction, "-0.1"), (fraction, "1.5"),
                        (fraction, "nan"), (above_zero, "-1")):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "1", "1"], "--seeds: [1] given twice"),
    (["--variants", "oracle", "source_only", "oracle"], "--variants: ['oracle'] given twice"),
    (["--seeds", "-5"], "argument --seeds: -5: must be at least 0"),
    (["--lr", "0"], "argument --lr: 0: must be a number above 0"),
    (["--lr", "inf"], "argument --lr: inf: must be a number above 0"),
    (["--lr", "nan"], "argument --lr: nan: must be a number above 0"),
    (["--output", "a_file/run"],
     "argument --output: a_file/run cannot be made: {tmp}/a_file is a file"),
    (["SEED", "7"], "override SEED: the benchmark sets it for each run (from --seeds)"),
    (["MODEL.DA.LOSS_WEIGHT", "1.0", "SOLVER.MAX_ITER", "300"],
     "override SOLVER.MAX_ITER: the benchmark sets it for each run (from --pretrain-iters and "
     "--iters)"),
])
def test_benchmark_options_that_would_not_mean_what_they_say_are_refused(argv, message, capsys,
                                                                          tmp_path, monkeypatch):
    benchmark = load_script("tools/benchmark_synthetic.py")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a_file").touch()
    with pytest.raises(SystemExit):
        benchmark.parse_args(argv)
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "error: " + message.format(tmp=tmp_path))


def test_synthetic_benchmark_writes_table_and_chart(tmp_path):
    command = ["tools/benchmark_synthetic.py", "--variants", "source_only", "oracle", "--seeds",
               "1", "--pretrain-iters", "4", "--iters", "5", "--target", "wide_angle",
               "--precision", "mixed", "--output", tmp_path, *TINY]
    stdout = run_script_here(*command).stdout
    assert (tmp_path / "pretrain" / "model_final.pth").exists()
    rows = table_rows((tmp_path / "results.md").read_text())
    assert "synthetic clean -> wide_angle" in stdout.lower() and "mixed precision" in stdout
    for run in ("pretrain", "source_only/seed1", "oracle/seed1"):
        cfg = load_config(str(tmp_path / run / "config.yaml"))
        assert cfg.SOLVER.AMP.ENABLED, run
        # stage 2 is evaluated with its weights averaged over its second half (5 steps: 2-5)
        averaging = cfg.SOLVER.WEIGHT_AVERAGING
        assert (averaging.ENABLED, averaging.START_ITER, averaging.PERIOD) == (
            (False, 0, 1) if run == "pretrain" else (True, 2, 1)), run
    for variant in ("source_only", "oracle"):
        results = json.loads((tmp_path / variant / "seed1" / "results.json").read_text())
        target = results["synthetic_wide_angle_val"]["bbox"]
        source = results["synthetic_clean_val"]["bbox"]
        assert rows[variant][0] == f"{target['AP50']:.1f}"
        assert rows[variant][1:4] == [f"{target[f'AP50-{c}']:.1f}" for c in ("car", "person", "bus")]
        assert rows[variant][4] == f"{source['AP50']:.1f}"
        assert re.fullmatch(r"\d+\.\d\d", rows[variant][6])
    with Image.open(tmp_path / "results.png") as chart:
        assert chart.format == "PNG" and chart.width > 200
    # run again into the folder: the finished runs are reused (also where only options that
    # adaptation reads differ), or refused with other options
    first_report = (tmp_path / "results.md").read_text()
    again = run_script_here(*command, "MODEL.DA.IMAGE.GRL_LAMBDA", "0.5")
    assert "stage" not in again.stdout and table_rows(again.stdout) == rows
    kept = list(tmp_path.glob("results.*.md"))  # the first run's, under its time
    assert len(kept) == 1 and kept[0].read_text() == first_report
    assert len(list(tmp_path.glob("results.*.png"))) == 1
    typo = run_script_here(*command, "MODEL.DA.IMAGE.GRL_LAMDA", "0.5", check=False)
    assert typo.returncode == 2 and "MODEL.DA.IMAGE.GRL_LAMDA" in typo.stderr.splitlines()[-1]
    other = run_script_here(*[("6" if arg == "5" else arg) for arg in command], check=False)
    assert other.returncode == 1 and "stage 2:" not in other.stdout
    assert other.stderr.strip().splitlines()[-1].startswith(
        f"error: {tmp_path / 'source_only' / 'seed1'} holds a run with other options")


def test_synthetic_benchmark_reports_the_runs_that_finished_when_one_fails(tmp_path,
                                                                            monkeypatch):
    benchmark = load_script("tools/benchmark_synthetic.py")
    measured = {"AP50": 50.0, **{f"AP50-{c}": 50.0 for c in ("car", "person", "bus")}}

    def run(variant, seed, weights, args):
        if (variant, seed) == ("oracle", 2):
            raise benchmark.RunFailed("training failed (exit 1); see its stdout.txt")
        return {"target": measured, "source": measured, "seconds_per_iter": 1.0}

    monkeypatch.setattr(benchmark, "pretrain", lambda args: tmp_path / "pretrain.pth")
    monkeypatch.setattr(benchmark, "run", run)
    monkeypatch.setattr(benchmark, "finished", lambda *args: False)
    monkeypatch.setattr("sys.argv", ["benchmark_synthetic.py", "--variants", "source_only",
                                     "oracle", "--seeds", "1", "2", "--output", str(tmp_path)])
    with pytest.raises(SystemExit, match="error: 1 runs failed"):
        benchmark.main()
    report = (tmp_path / "results.md").read_text()
    assert "failed: oracle seed 2: training failed (exit 1)" in report
    assert set(table_rows(report)) == {"variant", "source_only", "oracle"}


def one_square_car_per_image(sides):
    """A COCO ground truth of 100x100 images, image k + 1 holding one car: a square of side
    ``sides[k]`` at (10, 10). Returns it and the boxes (XYWH)."""
    boxes = [[10.0, 10.0, s, s] for s in sides]
    coco = COCO()
    coco.dataset = {
        "images": [{"id": i + 1, "width": 100, "height": 100} for i in range(len(boxes))],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": b,
                         "area": b[2] * b[3], "iscrowd": 0} for i, b in enumerate(boxes)],
        "categories": [{"id": 1, "name": "car"}]}
    coco.createIndex()
    return coco, boxes


def test_ap50_by_size_splits_boxes_into_area_thirds(tmp_path):
    by_size = load_script("benchmarks/synthetic_ap50_by_size.py")
    sides = [6, 8, 10, 20, 24, 28, 50, 60, 70]  # three boxes per third of the areas
    coco, boxes = one_square_car_per_image(sides)
    bounds = by_size.area_thirds(coco)
    assert 10 ** 2 < bounds[0] < 20 ** 2 and 28 ** 2 < bounds[1] < 50 ** 2
    found = [{"image_id": i + 1, "category_id": 1, "bbox": b, "score": 1.0}
             for i, b in enumerate(boxes) if b[2] >= 20]  # every small box missed
    detections = tmp_path / "detections.json"
    detections.write_text(json.dumps(found))
    overall, small, medium, large = by_size.ap50_by_area(coco, detections, bounds)
    assert (small, medium, large) == (0.0, 100.0, 100.0)
    assert 60 < overall < 70  # 2/3 recall at precision 1


def test_ap50_by_size_names_an_output_folder_that_is_none(tmp_path):
    (tmp_path / "results.md").touch()
    for path, what in ((tmp_path / "nowhere", "no such folder"), (tmp_path / "results.md",
                                                                  "a file")):
        result = run_script_here("benchmarks/synthetic_ap50_by_size.py", path, check=False)
        assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].endswith(
            f"error: {path}: {what}, not a tools/benchmark_synthetic.py --output folder")


def test_ap50_by_size_counts_a_box_on_a_bound_in_one_range(tmp_path):
    by_size = load_script("benchmarks/synthetic_ap50_by_size.py")
    coco, _ = one_square_car_per_image([10, 20, 30])  # areas 100, 400 (on a bound) and 900
    detections = tmp_path / "detections.json"
    detections.write_text(json.dumps([{"image_id": 2, "category_id": 1,
                                       "bbox": [10.0, 10.0, 20, 20], "score": 1.0}]))
    _, small, medium, large = by_size.ap50_by_area(coco, detections, [400.0, 650.0])
    assert (small, medium, large) == (0.0, pytest.approx(100.0), 0.0)
    detections.write_text(detections.read_text()[:30])  # an evaluation cut short
    with pytest.raises(SystemExit, match=f"^error: {detections}: not a JSON file of detections"):
        by_size.ap50_by_area(coco, detections, [400.0, 650.0])
    detections.write_text(json.dumps([{"image_id": 7, "category_id": 1, "bbox": [1, 1, 5, 5],
                                       "score": 1.0}]))  # another split's
    with pytest.raises(SystemExit, match=f"^error: {detections}: not detections of 3 images of "
                                         f"this split"):
        by_size.ap50_by_area(coco, detections, [400.0, 650.0])


def test_domain_probe_uses_a_models_own_d_img_only_where_its_checkpoint_trained_it(tmp_path):
    from da_detect.engine.predictor import Predictor

    probe_script = load_script("benchmarks/domain_probe.py")
    names = ["p3", "p4"]
    for config, has_own in ((SYNTHETIC_FPN, False), (SYNTHETIC_DA, True)):
        weights = untrained_weights(tmp_path / f"{config.stem}.pth", config)
        # both loaded into the adaptive model: only the second checkpoint holds its D_img
        predictor = Predictor(load_config(str(SYNTHETIC_DA), ["MODEL.WEIGHTS", str(weights)]))
        own = probe_script.trained_image_classifiers(predictor, names)
        assert (own is predictor.model.image_classifiers) if has_own else own is None


def test_domain_probe_finds_where_the_domains_differ():
    probe_script = load_script("benchmarks/domain_probe.py")
    torch.manual_seed(0)
    source = {"p3": torch.randn(32, 8, 6, 5)}
    target = {"p3": torch.randn(32, 8, 6, 5)}
    target["p3"][:, 0, :2] += 6.0  # the domains differ in the top third of rows only
    probe = probe_script.train_probe(source, target, hidden_channels=16, steps=300, seed=0)
    held_out = {"p3": torch.randn(16, 8, 6, 5)}
    shifted = {"p3": held_out["p3"].clone()}
    shifted["p3"][:, 0, :2] += 6.0
    source_accuracy = probe_script.band_accuracy({"p3": probe}, held_out, 0.0)
    target_accuracy = probe_script.band_accuracy({"p3": probe}, shifted, 1.0)
    mean = {band: (source_accuracy[band] + target_accuracy[band]) / 2 for band in source_accuracy}
    assert mean["top"] > 0.85
    assert 0.4 < mean["middle"] < 0.6 and 0.4 < mean["bottom"] < 0.6
    assert mean["all"] == pytest.approx((mean["top"] + mean["middle"] + mean["bottom"]) / 3)


def test_domain_probe_reports_every_model(tmp_path):
    from da_detect.checkpoint import DACheckpointer
    from detectron2.modeling import build_model

    DACheckpointer(build_model(load_config(str(SYNTHETIC_DA), TINY)), save_dir=str(tmp_path)).save(
        "random")
    weights = tmp_path / "random.pth"
    stdout = run_script_here("benchmarks/domain_probe.py", "--config-file", SYNTHETIC_DA,
                             "--weights", f"first={weights}", f"second={weights}", "--images", "2",
                             "--steps", "2", *TINY).stdout
    rows = table_rows(stdout)
    assert rows["first"] == rows["second"]  # same features, probe and data: same accuracies
    assert rows["first, its own D_img"] == rows["second, its own D_img"]
    assert len(rows["first"]) == 4 and all(0 <= float(v) <= 1 for v in rows["first"])
    # The untrained D_img starts at chance: its last layer is near zero, so its logits are too.
    assert all(float(v) == pytest.approx(0.5, abs=0.25) for v in rows["first, its own D_img"])
    # a source-only checkpoint trained no D_img: its one row's name, which reads as a number,
    # is kept as given
    untrained_weights(tmp_path / "plain.pth", SYNTHETIC_FPN)
    # (and KEY VALUE overrides right after --weights' checkpoints are overrides)
    stdout = run_script_here("benchmarks/domain_probe.py", "--config-file", SYNTHETIC_DA,
                             "--images", "2", "--steps", "2",
                             "--weights", f"1.10={tmp_path / 'plain.pth'}", *TINY).stdout
    assert list(table_rows(stdout)) == ["model", "1.10"]
    missing = run_script_here("benchmarks/domain_probe.py", "--config-file", SYNTHETIC_DA,
                              "--weights", f"x={tmp_path / 'missing.pth'}", *TINY, check=False)
    assert missing.returncode != 0 and "missing.pth" in missing.stderr
    unknown = run_script_here("benchmarks/domain_probe.py", "--config-file", SYNTHETIC_DA,
                              "--weights", str(weights), "--features", "p3", "p9", "--images", "1",
                              *TINY, check=False)
    assert unknown.returncode != 0 and "--features ['p9']" in unknown.stderr
    for weights_given, message in ((("x=",), "argument --weights: x=: must be NAME=PATH"),
                                   ((f"a={weights}", f"a={weights}"),
                                    "--weights: two checkpoints named 'a'"),
                                   (("MODEL.DEVICE", "cpu"), "no checkpoint before the config "
                                                             "key MODEL.DEVICE")):
        refused = run_script_here("benchmarks/domain_probe.py", "--config-file", SYNTHETIC_DA,
                                  "--weights", *weights_given, *TINY, check=False)
        assert refused.returncode == 2 and message in refused.stderr
    for split, message in (("synthetic_fogy_train", "--target-split: unknown dataset name "
                                                    "'synthetic_fogy_train' (did you mean "
                                                    "'synthetic_foggy_train'"),
                           ("synthetic_foggy_val", "--target-split synthetic_foggy_val: no "
                                                   "validation split beside it")):
        refused = run_script_here("benchmarks/domain_probe.py", "--config-file", SYNTHETIC_DA,
                                  "--weights", str(weights), "--target-split", split, *TINY,
                                  check=False)
        assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1].startswith(
            f"error: {message}")
