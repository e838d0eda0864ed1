"""Training: compiled train steps (and, as they land, trainingOptions and trainnet)."""

from .step import TrainStep, compile_train_step

__all__ = ["TrainStep", "compile_train_step"]
