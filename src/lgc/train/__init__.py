"""Training: compiled train steps, trainingOptions, trainnet, progress display, checkpoints."""

from .checkpoint import (
    Checkpoint,
    CheckpointError,
    checkpoint_files,
    latest_checkpoint,
    load_checkpoint,
)
from .options import TrainingOptions, trainingOptions
from .step import NonFiniteError, TrainStep, compile_train_step
from .trainnet import TrainingHistory, TrainingInfo, trainnet

__all__ = ["Checkpoint", "CheckpointError", "NonFiniteError", "TrainingHistory",
           "TrainingInfo", "TrainingOptions", "TrainStep", "checkpoint_files",
           "compile_train_step", "latest_checkpoint", "load_checkpoint", "trainingOptions",
           "trainnet"]
