"""``python -m napari_advseg.cli``: the ``advseg`` command (how torchrun starts each rank)."""

from __future__ import annotations

import os
import sys

from napari_advseg.cli import main

status = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # A rank of a torchrun job, its work done and its process group left: exit without running C++
    # static destructors, where a distributed helper thread still joinable can abort a finished rank
    # ("terminate called without an active exception", SIGABRT).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
sys.exit(status)
