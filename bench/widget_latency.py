"""Slider change to repainted napari layers, in a real viewer with the dock widget (run under a display).

For phantom volumes of 128, 256 and 512 pixels per side, each with the
shipped U-Net and generator loaded in the "Adversarial attack" dock: move
every latent slider (as "Random sample" does) and let the Explore tab work
as it does for a user (its timer, its two render workers, layer updates in
the main thread), processing Qt events until

- stage one is on screen: fields, adversarial image, bias, warped reference
  and arrows updated and the canvas repainted;
- the full update is: the U-Net's adversarial segmentation and the Dice
  table of the same code shown and repainted.

Prints the median over repeated changes as a markdown table, with the load
average (the figures are only comparable on an otherwise idle machine).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python bench/widget_latency.py [--repeats 20]
        [--sizes 512] [--compare] [--show "displacement (mm)" ...]

``--compare`` measures with the Explore tab's compare view on (before | after
side by side in napari's grid); ``--show`` switches overlays on by their layer
names (the deformation grid is on by default).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sizes", default="128,256,512")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--compare", action="store_true", help="with the compare view on")
    parser.add_argument("--show", action="append", default=[], help="an overlay to switch on (its layer name)")
    args = parser.parse_args()
    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from napari_advseg.data.samples import SAMPLE_FILES, sample_data_dir
    from napari_advseg.data.phantom import make_phantom
    from napari_advseg.widgets import AttackWidget

    def wait_for(condition, timeout: float = 120.0) -> None:
        """Process Qt events until ``condition()``, then once more (the repaint it asked for)."""
        deadline = time.perf_counter() + timeout
        while not condition():
            if time.perf_counter() > deadline:
                raise TimeoutError("the Explore tab did not finish a render")
            QApplication.processEvents()
            time.sleep(0.0002)
        QApplication.processEvents()

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, napari {napari.__version__}, "
          f"{args.repeats} slider changes per size, compare view {'on' if args.compare else 'off'}, "
          f"overlays shown: {', '.join(['deformation grid'] + args.show)}; "
          f"load average {os.getloadavg()[0]:.1f} at the start")
    print("| size | stage one: image, fields, arrows (median ms) | full update: + segmentation, Dice (median ms) |")
    print("| --- | --- | --- |")
    for size in (int(s) for s in args.sizes.split(",")):
        phantom = make_phantom(0, (12, size, size), spacing=(5.0, 384.0 / size, 384.0 / size))
        viewer = napari.Viewer(show=True)
        viewer.add_image(phantom.hu.astype(np.float32), name="CT", scale=phantom.spacing,
                         contrast_limits=(-200, 300))
        viewer.add_labels(phantom.labels, name="labels", scale=phantom.spacing)
        widget = AttackWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Adversarial attack")
        assert widget.load_target_file(sample_data_dir() / SAMPLE_FILES["target"])
        assert widget.load_generator_file(sample_data_dir() / SAMPLE_FILES["generator"])
        z = int(np.argmax((phantom.labels > 0).sum(axis=(1, 2))))
        viewer.dims.set_current_step(0, z)
        panel = widget.explore
        wait_for(panel.renders.idle)
        panel.render_now()
        for name in args.show:
            panel.set_overlay(name, True)
        if args.compare:
            assert panel.set_compare(True)
        QApplication.processEvents()
        # the sliders' effect labels are measured once per slice in the background: let that finish first,
        # so that the figures are of slider changes alone (it does not run again while the slice stays)
        wait_for(lambda: not panel.effects.busy and panel.effects.pending is None, timeout=600.0)
        first, full = [], []
        for i in range(args.repeats + 2):
            start = time.perf_counter()
            panel.phi_sliders.set_eps(np.clip(rng.normal(size=len(panel.phi_sliders.sliders)), -3, 3))
            panel.bias_sliders.set_eps(np.clip(rng.normal(size=len(panel.bias_sliders.sliders)), -3, 3))
            seq = panel.renders.pending.seq
            wait_for(lambda: panel.last_result.request.seq >= seq)
            shown = time.perf_counter()
            wait_for(lambda: panel.last_segmented is not None and panel.last_segmented.request.seq >= seq)
            end = time.perf_counter()
            wait_for(panel.renders.idle)
            if i >= 2:  # the first changes warm up allocators
                first.append(1000 * (shown - start))
                full.append(1000 * (end - start))
        print(f"| {size}x{size} | {statistics.median(first):.1f} | {statistics.median(full):.1f} |", flush=True)
        widget.shutdown()
        viewer.close()
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
