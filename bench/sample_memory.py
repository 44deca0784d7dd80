"""Peak memory of `advseg sample` on a 512 x 512 x 300 volume (the phantom at full CT size).

Writes a (300, 512, 512) phantom subject as NIfTI into a scratch folder, then
runs `advseg sample` on it with the shipped U-Net and generator in a child
process and reports that process's peak resident memory and wall time.

    .venv/bin/python bench/sample_memory.py [--scratch /tmp/advseg-big] [--slices 300]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/advseg-big"))
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    from napari_advseg.phantom import make_phantom
    from napari_advseg.volume import save_volume, volume_from_array

    args.scratch.mkdir(parents=True, exist_ok=True)
    ct = args.scratch / "big_ct.nii.gz"
    if not ct.exists():
        start = time.perf_counter()
        phantom = make_phantom(0, (args.slices, args.size, args.size), spacing=(1.0, 0.75, 0.75))
        volume = volume_from_array(phantom.hu.astype(np.float32), phantom.spacing)
        save_volume(phantom.hu, volume, ct, dtype=np.int16)
        print(f"made {ct} {phantom.hu.shape} in {time.perf_counter() - start:.0f} s", flush=True)
        del phantom, volume
    out = args.scratch / "out"
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "napari_advseg.cli", "sample", "--ct", str(ct), "--out", str(out),
                             "--overwrite", "--device", "cpu", "--quiet"], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(result.stdout[-2000:], result.stderr[-2000:])
    print(f"advseg sample on {args.slices} x {args.size} x {args.size}: exit {result.returncode}, "
          f"{seconds:.0f} s, peak resident memory {peak_kib / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
