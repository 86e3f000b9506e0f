"""Per-class AP50, COCO-style and VOC07 11-point, against answers worked out by hand."""
import json
import math

import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import Boxes, BoxMode, Instances

from da_detect.data.registry import forget_dataset
from da_detect.engine.output_dir import save_results
from da_detect.evaluation import COCOAP50Evaluator, VOC07AP50Evaluator

# One image, two cars A and B and a crowd region C. Detections by score: C (ignored: it lies on
# the crowd region), A (TP), a false positive, B (TP). Precision/recall after each counted
# detection: (1, 1/2), (1/2, 1/2), (2/3, 1); interpolated precision is 1 up to recall 1/2, then 2/3.
#   COCO, 101 recall points: 51 points at 1 and 50 at 2/3 -> (51 + 50 * 2/3) / 101
#   VOC07, 11 recall points:  6 points at 1 and  5 at 2/3 -> ( 6 +  5 * 2/3) / 11
COCO_AP50 = 100 * (51 + 50 * 2 / 3) / 101
VOC07_AP50 = 100 * (6 + 5 * 2 / 3) / 11
GT = [([10, 10, 30, 30], 0), ([50, 50, 80, 80], 0), ([0, 60, 20, 90], 1)]
DETECTIONS = [([0, 60, 20, 90], 0.95), ([10, 10, 30, 30], 0.9), ([60, 0, 90, 20], 0.8),
              ([50, 50, 80, 80], 0.7)]


def register(name, classes, ground_truth=GT):
    """Register ``name`` afresh: one 100x100 image whose ground truth is ``ground_truth``,
    (XYXY box, iscrowd) pairs of the first class."""
    forget_dataset(name)
    DatasetCatalog.register(name, lambda: [{
        "file_name": "x.png", "image_id": 1, "height": 100, "width": 100,
        "annotations": [{"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0,
                         "iscrowd": crowd} for box, crowd in ground_truth]}])
    MetadataCatalog.get(name).set(thing_classes=classes)
    return name


@pytest.fixture(scope="module")
def dataset():
    return register("ap50_hand_example", ["car"])


def evaluate(evaluator, detections=DETECTIONS):
    instances = Instances((100, 100))
    instances.pred_boxes = Boxes(torch.tensor([box for box, _ in detections],
                                              dtype=torch.float).reshape(-1, 4))
    instances.scores = torch.tensor([score for _, score in detections])
    instances.pred_classes = torch.zeros(len(detections), dtype=torch.long)
    evaluator.reset()
    evaluator.process([{"image_id": 1, "height": 100, "width": 100}], [{"instances": instances}])
    return evaluator.evaluate()["bbox"]


def test_coco_ap50_matches_hand_computation(dataset, tmp_path):
    results = evaluate(COCOAP50Evaluator(dataset, output_dir=str(tmp_path), distributed=False))
    assert results["AP50-car"] == pytest.approx(COCO_AP50, abs=1e-3)
    assert results["AP50"] == pytest.approx(COCO_AP50, abs=1e-3)


def test_coco_ap50_of_a_class_without_ground_truth_is_nan_and_left_out_of_the_mean(tmp_path):
    dataset = register("ap50_hand_example_with_bus", ["car", "bus"])
    results = evaluate(COCOAP50Evaluator(dataset, output_dir=str(tmp_path), distributed=False))
    assert math.isnan(results["AP50-bus"])
    assert results["AP50-car"] == pytest.approx(COCO_AP50, abs=1e-3)
    assert results["AP50"] == pytest.approx(COCO_AP50, abs=1e-3)


def test_voc07_ap50_matches_hand_computation(dataset):
    results = evaluate(VOC07AP50Evaluator(dataset, distributed=False))
    assert results["AP50-car"] == pytest.approx(VOC07_AP50, abs=1e-6)
    assert results["AP50"] == pytest.approx(VOC07_AP50, abs=1e-6)


def test_voc07_ap50_of_a_class_without_ground_truth_is_nan_and_left_out_of_the_mean():
    dataset = register("ap50_hand_example_with_bus", ["car", "bus"])
    results = evaluate(VOC07AP50Evaluator(dataset, distributed=False))
    assert math.isnan(results["AP50-bus"])
    assert results["AP50-car"] == results["AP50"] == pytest.approx(VOC07_AP50, abs=1e-6)


def test_a_detection_mostly_inside_a_crowd_region_is_ignored_by_both(dataset, tmp_path):
    inside = ([2, 62, 10, 70], 0.85)  # IoU with the crowd region 0.11, all of it inside it
    coco = evaluate(COCOAP50Evaluator(dataset, output_dir=str(tmp_path), distributed=False),
                    DETECTIONS + [inside])
    voc07 = evaluate(VOC07AP50Evaluator(dataset, distributed=False), DETECTIONS + [inside])
    assert coco["AP50"] == pytest.approx(COCO_AP50, abs=1e-3)
    assert voc07["AP50"] == pytest.approx(VOC07_AP50, abs=1e-6)


def test_coco_ap50_without_any_detection_is_zero_where_there_is_ground_truth(tmp_path):
    dataset = register("ap50_hand_example_with_bus", ["car", "bus"])
    results = evaluate(COCOAP50Evaluator(dataset, output_dir=str(tmp_path), distributed=False),
                       detections=[])
    assert results["AP50-car"] == results["AP50"] == results["AP"] == 0.0
    assert math.isnan(results["AP50-bus"])  # no bus in the split
    # the cars are 20x20 and 30x30 pixels, both of COCO's small area (< 32²)
    assert results["APs"] == 0.0 and math.isnan(results["APm"]) and math.isnan(results["APl"])


def test_coco_metrics_without_any_detection_are_cocoevals_for_a_miss(tmp_path):
    # boxes of area exactly 32² and 96², COCO's area bounds, each inside both ranges it bounds
    dataset = register("bounds", ["car"], [([10, 10, 42, 42], 0), ([0, 0, 96, 96], 0)])
    evaluator = COCOAP50Evaluator(dataset, output_dir=str(tmp_path), distributed=False)
    without = evaluate(evaluator, detections=[])  # no COCOeval: worked out by da-detect
    miss = evaluate(evaluator, detections=[([97, 97, 100, 100], 0.9)])  # by COCOeval
    assert without == miss == {metric: 0.0 for metric in miss}
    assert set(miss) == {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP50-car"}


def test_results_json_is_standard_json_with_null_for_a_metric_of_nothing_to_find(tmp_path):
    dataset = register("ap50_hand_example_with_bus", ["car", "bus"])
    results = evaluate(COCOAP50Evaluator(dataset, output_dir=str(tmp_path), distributed=False))
    assert math.isnan(results["APl"]) and math.isnan(results["AP50-bus"])  # no such box

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    path = save_results({dataset: {"bbox": results}}, tmp_path)
    written = json.loads(path.read_text(), parse_constant=refuse)[dataset]["bbox"]
    assert written == {k: None if math.isnan(v) else v for k, v in results.items()}
    assert written["AP50-car"] == pytest.approx(COCO_AP50, abs=1e-3)


def test_coco_ap50_of_a_class_with_only_crowd_regions_and_no_detection_is_nan(tmp_path):
    dataset = register("only_a_crowd", ["car"], [([0, 60, 20, 90], 1)])  # nothing to find
    results = evaluate(COCOAP50Evaluator(dataset, output_dir=str(tmp_path), distributed=False),
                       detections=[])
    assert math.isnan(results["AP50-car"])


def test_coco_ap50_reads_the_split_as_it_is_now_not_an_earlier_runs_conversion(tmp_path):
    detection = [([10, 10, 30, 30], 0.9)]
    register("moving_car", ["car"], [([10, 10, 30, 30], 0)])
    first = evaluate(COCOAP50Evaluator("moving_car", output_dir=str(tmp_path), distributed=False),
                     detection)
    # the annotations changed; same name, same output folder
    register("moving_car", ["car"], [([60, 60, 90, 90], 0)])
    second = evaluate(COCOAP50Evaluator("moving_car", output_dir=str(tmp_path), distributed=False),
                      detection)
    assert first["AP50-car"] == pytest.approx(100.0) and second["AP50-car"] == 0.0


def test_coco_ap50_counts_a_detection_of_iou_between_half_and_three_quarters(dataset, tmp_path):
    # IoU 0.6 with car A: a match at IoU 0.5, which AP50 reads, not at 0.75
    detections = [([10, 10, 30, 22], 0.9), ([50, 50, 80, 80], 0.8)]
    results = evaluate(COCOAP50Evaluator(dataset, output_dir=str(tmp_path), distributed=False),
                       detections)
    assert results["AP50-car"] == pytest.approx(100.0)


def test_voc07_ap50_counts_a_detection_of_iou_exactly_half(dataset):
    # the top half of car A: intersection 200 over union 400, a match (IoU >= 0.5)
    results = evaluate(VOC07AP50Evaluator(dataset, distributed=False),
                       [([10, 10, 30, 20], 0.9), ([50, 50, 80, 80], 0.8)])
    assert results["AP50-car"] == pytest.approx(100.0)


def test_voc07_ap50_counts_a_second_detection_of_one_object_as_a_false_positive(dataset):
    # A, A again, B: TP, FP, TP, the counts of the hand example without its crowd detection
    results = evaluate(VOC07AP50Evaluator(dataset, distributed=False),
                       [([10, 10, 30, 30], 0.9), ([10, 10, 30, 30], 0.8), ([50, 50, 80, 80], 0.7)])
    assert results["AP50-car"] == pytest.approx(VOC07_AP50, abs=1e-6)


def test_voc07_ap50_ranks_detections_by_score_whatever_their_order(dataset):
    # the false positive first: taken in this order, it would rank above both cars
    shuffled = [DETECTIONS[2], DETECTIONS[0], DETECTIONS[3], DETECTIONS[1]]
    results = evaluate(VOC07AP50Evaluator(dataset, distributed=False), shuffled)
    assert results["AP50-car"] == pytest.approx(VOC07_AP50, abs=1e-6)
