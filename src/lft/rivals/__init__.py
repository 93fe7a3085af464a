"""Rival attacks from other libraries, run on the same UAP tasks as the fine-tuners.

A leaf package: it reads tasks (:mod:`lft.tasks`), victims and data, never the meta-learning
engine. :mod:`lft.rivals.art` wraps IBM ART's universal perturbation (the optional extra
``rivals``: ``pip install -e '.[rivals]'``); ``lft.rivals.art.available()`` says whether ART is
installed.
"""
