"""Named, independent random streams derived from one seed.

Every random draw of a run comes from a generator made here, keyed by the run's seed and a
purpose ("meta-train", "test", ...), so meta-training and test tasks never share a stream and
the same seed gives the same numbers.
"""

from __future__ import annotations

import random
import zlib

import numpy as np
import torch


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for ``purpose`` that is independent of other purposes' seeds."""
    ss = np.random.SeedSequence([int(seed), zlib.crc32(purpose.encode())])
    return int(ss.generate_state(2, dtype=np.uint32).astype(np.uint64) @ np.array(
        [1, 2**31], dtype=np.uint64))


def generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU ``torch.Generator`` for ``purpose``."""
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, purpose))
    return g


def seed_everything(seed: int) -> None:
    """Seed the global generators too (for any code path that does not take a generator)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
