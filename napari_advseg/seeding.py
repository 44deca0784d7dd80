"""Building torch modules from a fixed seed without touching anybody else's random state."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_BUILD_LOCK = threading.Lock()


@contextmanager
def seeded_build(seed: int | None) -> Iterator[None]:
    """Run the block with torch's global generator seeded to ``seed``, then restore the caller's state.

    Module constructors draw their initial weights from the global generator. Two builds at once (a
    trainer in the napari widget's worker while another worker loads a target) would otherwise interleave
    their draws, so the same seed could give different weights. Every module this package builds goes
    through here, so the lock makes each build see only its own seed. ``None``: no seed, for a network
    whose weights are loaded over its first ones (the lock and the restored state still apply).
    """
    import torch

    with _BUILD_LOCK, torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        yield
