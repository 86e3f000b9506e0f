"""Evaluation as the domain-adaptation literature reports it: AP50 per class on the target."""
from .coco_ap50 import COCOAP50Evaluator  # noqa: F401
