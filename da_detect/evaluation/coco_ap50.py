"""COCO-style box evaluation that also reports AP at IoU 0.5 for every class."""
import itertools
import logging
import os

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_json
from detectron2.evaluation import COCOEvaluator
from pycocotools.cocoeval import Params
from tabulate import tabulate

from .. import compat

logger = logging.getLogger(__name__)


def ap50_per_class(coco_eval, area_index=0):
    """(K,) AP50 (%) per class of an accumulated ``COCOeval``, for its area range
    ``area_index`` (0: all) at its largest detection count; NaN for a class without ground truth.
    """
    assert coco_eval.params.iouThrs[0] == 0.5
    precision = coco_eval.eval["precision"][0, :, :, area_index, -1]  # (recall, class)
    valid = precision > -1
    sums = np.where(valid, precision, 0.0).sum(axis=0)
    counts = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, 100 * sums / counts, np.nan)


class COCOAP50Evaluator(COCOEvaluator):
    """detectron2's :class:`COCOEvaluator` on boxes, plus ``AP50-<class>`` for every class.

    Results (``evaluate()["bbox"]``) hold COCO's AP, AP50, AP75, APs/m/l and per-class AP, and
    per-class AP50 read from the same precision array (IoU = 0.5, all areas, 100 detections).
    Uses pycocotools' evaluator when detectron2 was installed without its C++ extension.
    """

    # what COCOEvaluator writes in output_dir: the raw predictions, and them in COCO's format
    PREDICTION_FILES = ("instances_predictions.pth", "coco_instances_results.json")

    def __init__(self, dataset_name, output_dir=None, distributed=True):
        metadata = MetadataCatalog.get(dataset_name)
        json_file = metadata.get("json_file")
        if json_file and not os.path.exists(json_file):
            DatasetCatalog.get(dataset_name)  # datasets generated on first use write it then
        # A split without a COCO file of its own is converted into one in output_dir, afresh:
        # detectron2 would read back an earlier run's conversion there, even after the split's
        # annotations changed, and would keep the file's path in the split's metadata for every
        # later evaluator in the process, even after that folder is gone.
        converted = json_file is None and output_dir is not None
        if converted:
            metadata.json_file = os.path.join(output_dir, f"{dataset_name}_coco_format.json")
            convert_to_coco_json(dataset_name, metadata.json_file, allow_cached=False)
        try:
            super().__init__(dataset_name, tasks=("bbox",), distributed=distributed,
                             output_dir=output_dir, use_fast_impl=compat.HAS_C_EXTENSION)
        finally:
            if converted:
                del metadata.json_file

    def _eval_predictions(self, predictions, img_ids=None):
        """detectron2's, on the images evaluated (one prediction record each, with or without
        detections) unless ``img_ids`` says otherwise: a split's COCO file may hold images its
        loader dropped (a missing file, a box that cannot be used), whose boxes no model saw
        and which would count as missed."""
        if img_ids is None:
            img_ids = sorted({p["image_id"] for p in predictions})
        self._evaluated_ids = set(img_ids)
        super()._eval_predictions(predictions, img_ids=img_ids)

    def _derive_coco_results(self, coco_eval, iou_type, class_names=None):
        results = super()._derive_coco_results(coco_eval, iou_type, class_names)
        if coco_eval is None:
            return self._results_without_detections(results, class_names or [])
        if not class_names:
            return results
        per_class = ap50_per_class(coco_eval)
        assert len(class_names) == len(per_class)
        ap50 = {name: float(value) for name, value in zip(class_names, per_class)}
        cells = list(itertools.chain(*ap50.items()))
        n_cols = min(6, len(cells))
        table = tabulate(list(itertools.zip_longest(*[cells[i::n_cols] for i in range(n_cols)])),
                         tablefmt="pipe", floatfmt=".3f",
                         headers=["category", "AP50"] * (n_cols // 2), numalign="left")
        logger.info(f"Per-category {iou_type} AP50:\n" + table)
        results.update({f"AP50-{name}": value for name, value in ap50.items()})
        return results

    def _results_without_detections(self, metrics, class_names):
        """What COCOeval gives a split with no detection at all, which detectron2 leaves NaN: 0
        for each metric and class with ground truth (non-crowd boxes of its areas), NaN for one
        without."""
        boxes = [a for a in self._coco_api.dataset["annotations"]
                 if not a.get("iscrowd", 0) and a["image_id"] in self._evaluated_ids]
        params = Params(iouType="bbox")
        area_ranges = dict(zip(params.areaRngLbl, params.areaRng))  # all, small, medium, large
        area_of = {"APs": "small", "APm": "medium", "APl": "large"}

        def zero_if_any(matches):
            return 0.0 if any(matches) else float("nan")

        results = {}
        for metric in metrics:
            low, high = area_ranges[area_of.get(metric, "all")]
            results[metric] = zero_if_any(low <= a["area"] <= high for a in boxes)
        for name, category in zip(class_names, sorted(self._coco_api.getCatIds())):
            results[f"AP50-{name}"] = zero_if_any(a["category_id"] == category for a in boxes)
            if len(class_names) > 1:  # detectron2 gives a single class no AP of its own
                results[f"AP-{name}"] = results[f"AP50-{name}"]
        return results
