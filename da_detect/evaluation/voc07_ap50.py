"""PASCAL VOC 2007 11-point AP at IoU 0.5 per class, as much of the DA literature reports it."""
import itertools
import logging
from collections import defaultdict

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.evaluation.pascal_voc_evaluation import voc_ap
from detectron2.structures import Boxes, BoxMode, pairwise_ioa, pairwise_iou
from detectron2.utils import comm
from tabulate import tabulate

logger = logging.getLogger(__name__)


class VOC07AP50Evaluator(DatasetEvaluator):
    """Per-class VOC07 11-point AP50 (and their mean) over any registered detection dataset.

    Ground truth comes from the dataset dicts; crowd / ignore regions (``iscrowd=1``) play the
    part of VOC's "difficult" objects: a detection that matches no object (IoU >= 0.5, each
    object once) but lies mostly inside one (intersection >= half the detection's area, COCO's
    rule for crowds: a car inside a ``cargroup``) is neither a true nor a false positive.
    IoU is the continuous one (no +1 pixel), as in COCO evaluation.
    Results: ``{"bbox": {"AP50": mean, "AP50-<class>": ...}}`` in percent.
    """

    def __init__(self, dataset_name, distributed=True):
        self._dataset_name = dataset_name
        self._classes = MetadataCatalog.get(dataset_name).thing_classes
        self._distributed = distributed

    def reset(self):
        self._detections = []  # (image_id, class, score, x0, y0, x1, y1)

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            instances = out["instances"].to("cpu")
            for box, score, cls in zip(instances.pred_boxes.tensor.tolist(),
                                       instances.scores.tolist(), instances.pred_classes.tolist()):
                self._detections.append((inp["image_id"], cls, score, *box))

    def evaluate(self):
        detections = self._detections
        if self._distributed:
            detections = list(itertools.chain(*comm.gather(detections, dst=0)))
            if not comm.is_main_process():
                return {}
        ground_truth = ground_truth_by_image(DatasetCatalog.get(self._dataset_name))
        ap50 = {name: voc07_ap50([d for d in detections if d[1] == k], ground_truth, k) * 100
                for k, name in enumerate(self._classes)}
        table = tabulate([(k, f"{v:.3f}") for k, v in ap50.items()], headers=["category", "AP50"],
                         tablefmt="pipe")
        logger.info(f"Per-category VOC07 11-point AP50 on {self._dataset_name}:\n{table}")
        results = {"AP50": float(np.nanmean(list(ap50.values())))}
        results.update({f"AP50-{k}": v for k, v in ap50.items()})
        return {"bbox": results}


def ground_truth_by_image(dataset_dicts):
    """image_id -> list of (class, XYXY box, is_ignored)."""
    gt = defaultdict(list)
    for d in dataset_dicts:
        for a in d.get("annotations", []):
            box = BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYXY_ABS)
            gt[d["image_id"]].append((a["category_id"], box, bool(a.get("iscrowd", 0))))
    return gt


def voc07_ap50(detections, ground_truth, category):
    """11-point AP at IoU 0.5 of ``detections`` (image_id, class, score, box...) of one class."""
    boxes = {img: [g for g in objs if g[0] == category] for img, objs in ground_truth.items()}
    num_positives = sum(not ignored for objs in boxes.values() for _, _, ignored in objs)
    if num_positives == 0:
        return float("nan")
    matched = {img: [False] * len(objs) for img, objs in boxes.items()}
    tp, fp = [], []
    for image_id, _, _, *box in sorted(detections, key=lambda d: -d[2]):
        objs = boxes.get(image_id, [])
        if objs:
            detection = Boxes(torch.tensor([box]))
            targets = Boxes(torch.tensor([g[1] for g in objs]))
            ignored = torch.tensor([g[2] for g in objs])
            ious = pairwise_iou(detection, targets)[0].masked_fill(ignored, -1)
            best = int(ious.argmax())
            if ious[best] >= 0.5 and not matched[image_id][best]:
                matched[image_id][best] = True
                tp.append(1), fp.append(0)
                continue
            # in an ignore region: most of the detection inside it, COCO's rule for crowds
            if (pairwise_ioa(targets, detection)[:, 0][ignored] >= 0.5).any():
                continue
        tp.append(0), fp.append(1)
    tp, fp = np.cumsum(tp, dtype=float), np.cumsum(fp, dtype=float)
    recall = tp / num_positives
    precision = tp / np.maximum(tp + fp, np.finfo(float).eps)
    return float(voc_ap(recall, precision, use_07_metric=True))
