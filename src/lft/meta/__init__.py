"""Meta-learning: the inner loop, the objective, the methods and the outer loop."""

from lft.meta.evaluate import Curve, evaluate, tune_learning_rate
from lft.meta.initializers import LearnedInit, RandomInit
from lft.meta.learners import METHODS, Method, MethodConfig, preset
from lft.meta.objective import Objective, step_weights
from lft.meta.trainer import MetaTrainer, TrainConfig, jsonl_logger
from lft.meta.unroll import trajectory

__all__ = ["Curve", "evaluate", "tune_learning_rate", "LearnedInit", "RandomInit", "METHODS",
           "Method", "MethodConfig", "preset", "Objective", "step_weights", "MetaTrainer",
           "TrainConfig", "jsonl_logger", "trajectory"]
