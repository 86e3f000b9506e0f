"""Evaluation as the domain-adaptation literature reports it: AP50 per class on the target."""
from .coco_ap50 import COCOAP50Evaluator  # noqa: F401
from .voc07_ap50 import VOC07AP50Evaluator  # noqa: F401
