"""Slider change to updated napari layers, in a real viewer with the dock widget (run under a display).

For phantom volumes of 128, 256 and 512 pixels per side, each with the
shipped U-Net and generator loaded in the "Adversarial attack" dock: set new
latent slider values, render the slice (decode, warp, bias, U-Net
segmentation, Dice table), update every layer, and let Qt repaint the canvas
(`processEvents`). Prints the median over repeated changes next to the
core-only figure of bench/explore_speed.py.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python bench/widget_latency.py [--repeats 20]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sizes", default="128,256,512")
    args = parser.parse_args()
    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from napari_advseg.data.samples import SAMPLE_FILES, sample_data_dir
    from napari_advseg.data.phantom import make_phantom
    from napari_advseg.widgets import AttackWidget

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, napari {napari.__version__}")
    print("| size | compute: fields, image, U-Net, Dice | layer updates | canvas repaint | total (median ms) |")
    print("| --- | --- | --- | --- | --- |")
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
        panel.render_now()
        QApplication.processEvents()
        parts: dict[str, list[float]] = {"compute": [], "layers": [], "repaint": [], "total": []}
        for i in range(args.repeats + 2):
            panel._timer.stop()
            start = time.perf_counter()
            panel.phi_sliders.set_eps(np.clip(rng.normal(size=len(panel.phi_sliders.sliders)), -3, 3))
            panel.bias_sliders.set_eps(np.clip(rng.normal(size=len(panel.bias_sliders.sliders)), -3, 3))
            panel._timer.stop()  # the slider signals queued a debounced render: do it here, timed in parts
            panel.pending = None
            result = panel.renderer.render(panel.request_from())
            computed = time.perf_counter()
            panel._show(result)
            shown = time.perf_counter()
            QApplication.processEvents()
            end = time.perf_counter()
            if i >= 2:
                for key, value in (("compute", computed - start), ("layers", shown - computed),
                                   ("repaint", end - shown), ("total", end - start)):
                    parts[key].append(1000 * value)
        medians = {k: statistics.median(v) for k, v in parts.items()}
        print(f"| {size}x{size} | {medians['compute']:.1f} | {medians['layers']:.1f} | {medians['repaint']:.1f} "
              f"| {medians['total']:.1f} |", flush=True)
        widget.shutdown()
        viewer.close()


if __name__ == "__main__":
    main()
