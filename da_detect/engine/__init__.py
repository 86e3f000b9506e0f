"""Training and evaluation loops built from detectron2's engine."""
from .trainer import DATrainer  # noqa: F401
