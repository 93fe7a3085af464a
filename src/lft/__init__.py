"""lft: learned fine-tuners for (incongruous) few-shot learning.

The pieces, left to right: a :class:`~lft.tasks.TaskFamily` samples tasks; a rule
(:mod:`lft.rules`) fed by a gradient oracle (:mod:`lft.oracles`) fine-tunes them
(:func:`lft.meta.trajectory`); a :class:`~lft.meta.Method` names the choices that make LFT, L2O
or MAML; :class:`~lft.meta.MetaTrainer` meta-trains it and :func:`lft.meta.evaluate` reports it.
"""

from lft._version import __version__
from lft.finetuner import FineTuner
from lft.meta import (
                      MetaTrainer,
                      Method,
                      MethodConfig,
                      TrainConfig,
                      evaluate,
                      preset,
                      tune_learning_rate,
)
from lft.oracles import FirstOrder, ZerothOrder
from lft.rules import SGD, Adam, CoordinateLSTM, SignSGD, UpdateRule
from lft.tasks import SineFamily, TaskBatch, TaskFamily

__all__ = [
                      "SGD",
                      "Adam",
                      "CoordinateLSTM",
                      "FineTuner",
                      "FirstOrder",
                      "MetaTrainer",
                      "Method",
                      "MethodConfig",
                      "SignSGD",
                      "SineFamily",
                      "TaskBatch",
                      "TaskFamily",
                      "TrainConfig",
                      "UpdateRule",
                      "ZerothOrder",
                      "__version__",
                      "evaluate",
                      "preset",
                      "tune_learning_rate",
]
