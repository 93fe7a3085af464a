"""Meta-learning: the inner loop, the objective, the methods and the outer loop."""

from lft.meta.evaluate import Curve, evaluate, tune_learning_rate
from lft.meta.initializers import LearnedInit, RandomInit
from lft.meta.learners import METHODS, Method, MethodConfig, preset
from lft.meta.objective import Objective, step_weights
from lft.meta.subspace import fit_subspace, gather_gradients
from lft.meta.trainer import MetaTrainer, TrainConfig, jsonl_logger
from lft.meta.unroll import trajectory

__all__ = [
           "METHODS",
           "Curve",
           "LearnedInit",
           "MetaTrainer",
           "Method",
           "MethodConfig",
           "Objective",
           "RandomInit",
           "TrainConfig",
           "evaluate",
           "fit_subspace",
           "gather_gradients",
           "jsonl_logger",
           "preset",
           "step_weights",
           "trajectory",
           "tune_learning_rate",
]
