"""Analyses of meta-trained fine-tuners: the LFT/L2O meta-gradient gap of Theorem 1."""

from lft.analysis.gradient_gap import GapSettings, measure, summarize, task_meta_gradients

__all__ = ["GapSettings", "measure", "summarize", "task_meta_gradients"]
