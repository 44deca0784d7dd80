"""Peak memory of `advseg sample` on a 300 x 512 x 512 volume resampled from the shipped phantom.

Resamples the shipped phantom CT (48 x 128 x 128 at 5 x 3 x 3 mm) trilinearly
to ``--shape`` (default 300 x 512 x 512, the same field of view), writes it as
NIfTI into a scratch folder, then runs `advseg sample` on it with the shipped
U-Net and generator in a child process and reports that process's peak
resident memory and wall time.

    .venv/bin/python bench/sample_memory.py [--shape 300 512 512] [--scratch /tmp/advseg-big] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def resampled_phantom(shape: tuple[int, int, int], path: Path) -> dict:
    """Write the shipped phantom resampled to ``shape`` (Z, Y, X) to ``path``; return what was made."""
    import torch
    import torch.nn.functional as F

    from napari_advseg.data.samples import sample_file
    from napari_advseg.io.geometry import volume_from_array
    from napari_advseg.io.nifti import load_ct
    from napari_advseg.io.nifti_save import save_volume

    source = load_ct(sample_file("ct"))
    hu = torch.from_numpy(np.ascontiguousarray(source.hu, dtype=np.float32))[None, None]
    big = F.interpolate(hu, size=tuple(shape), mode="trilinear", align_corners=False)[0, 0].numpy()
    spacing = tuple(s * n / m for s, n, m in zip(source.spacing, source.shape, shape))
    volume = volume_from_array(big, spacing)
    save_volume(np.round(big).astype(np.int16), volume, path, dtype=np.int16, overwrite=True)
    return {"source": str(sample_file("ct")), "source_shape": list(source.shape), "shape": list(shape),
            "spacing_mm": [float(s) for s in spacing]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(300, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/advseg-big"))
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    ct = args.scratch / f"resampled_{'x'.join(map(str, args.shape))}.nii.gz"
    start = time.perf_counter()
    made = resampled_phantom(tuple(args.shape), ct)
    print(f"made {ct} {tuple(args.shape)} in {time.perf_counter() - start:.0f} s", flush=True)
    out = args.scratch / "out"
    command = [sys.executable, "-m", "napari_advseg.cli", "sample", "--ct", str(ct), "--out", str(out),
               "--overwrite", "--device", "cpu", "--quiet"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(result.stdout[-2000:], result.stderr[-2000:])
    print(f"advseg sample on {' x '.join(map(str, args.shape))}: exit {result.returncode}, {seconds:.0f} s, "
          f"peak resident memory {peak_kib / 2**20:.2f} GiB", flush=True)
    if args.json:
        figures = {**made, "command": "advseg " + " ".join(command[3:]), "exit_status": result.returncode,
                   "seconds": seconds, "peak_rss_gib": peak_kib / 2**20,
                   "input_gib_float32": float(np.prod(args.shape)) * 4 / 2**30}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    if result.returncode != 0:
        sys.exit(result.returncode)


if __name__ == "__main__":
    main()
