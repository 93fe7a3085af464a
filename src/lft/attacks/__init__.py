"""Few-shot universal adversarial perturbations: victims, the attack, its command line.

* :mod:`lft.tasks.victims`: LeNet-5 victims per image source, trained once and cached as
  safetensors with a record of how (``lft victims train``);
* :mod:`lft.attacks.attack`: one universal perturbation for a user's victim and images, by a
  meta-learned fine-tuner or a hand-designed rule, white box or black box (``lft attack``);
* the task family that meta-trains fine-tuners for this lives in :mod:`lft.tasks.uap`.
"""

from lft.attacks.attack import (
    AttackResult,
    fine_tuner_method,
    load_attack_victim,
    load_labelled_images,
    save_perturbation,
    universal_perturbation,
)
from lft.tasks.victims import (
    Victim,
    load_victim,
    read_victim,
    save_victim,
    train_or_reuse,
    train_victim,
    victim_path,
)

__all__ = ["AttackResult", "Victim", "fine_tuner_method", "load_attack_victim",
           "load_labelled_images", "load_victim", "read_victim", "save_perturbation",
           "save_victim", "train_or_reuse", "train_victim", "universal_perturbation",
           "victim_path"]
