"""Plain words for the technical terms of the Train and Harden tabs: one sentence each, shown as tooltips."""

from __future__ import annotations

from qtpy.QtWidgets import QLabel

GLOSSARY = {
    "gamma": "Attack strength (gamma): how hard the generator tries to make the network mislabel the organs; "
             "higher values give a stronger attack and usually larger image changes.",
    "alpha": "Deformation smoothness (alpha): the penalty on a bumpy warp; higher values give gentler, smoother "
             "deformations of the anatomy.",
    "beta": "Bias smoothness (beta): the penalty on a patchy intensity change; higher values give slower, "
            "scanner-like brightness variations.",
    "temperature": "Temperature: the spread of the random codes; 0 gives the generator's average attack, 1 the "
                   "variety it was trained for, above 1 more unusual attacks.",
    "rho": "Perceptibility (rho): how much the attack changes the image, as the size of the change relative to "
           "the image (the paper keeps it near 0.08, an 8 % change).",
    "steps": "Training steps: each step updates the network once on one batch of slices; more steps give a "
             "better-trained result and take proportionally longer.",
    "batch": "Batch size: the slices used in one step; larger batches give steadier training but make every "
             "step slower.",
    "learning rate": "Learning rate: how big each step's update is; too high makes training unstable, too low "
                     "makes it slow.",
    "seed": "Random seed: the same seed and settings give the same run again.",
    "slider shaping": "Shape the latent sliders (off by default): extra training terms that make each number of "
                      "the latent code a mild change of its own, so the Explore tab's sliders each move the fields "
                      "visibly; a step then takes about twice the time and the attack is weaker (measured on a "
                      "MONAI network: 10.5 % against 17.6 % mean Dice drop).",
    "organs": "The organs the attack aims at (their surroundings are where the image may change most).",
    "checkpoint folder": "Where the trained generator (generator.pt) and its settings (config.json) are written.",
    "fine-tune on": "What the network is trained on besides clean slices: the current generator's attacks, or a "
                    "baseline to compare against.",
    "adversarial fraction": "The share of each batch's slices replaced by attacked versions; the rest stay clean "
                            "so the network keeps its normal accuracy.",
    "rounds": "Rounds of the adversarial game: before every round after the first, the generator is trained "
              "again against the network being hardened.",
    "generator steps": "Generator training steps before each extra round.",
    "rho range": "Attacked slices are scaled to a perceptibility (rho) drawn from this range, so the network "
                 "sees weak and strong attacks alike.",
    "hardened file": "Where the hardened copy of the network is written; its resume state is kept beside it.",
}


def term_label(text: str, term: str | None = None) -> QLabel:
    """A form label whose tooltip explains ``term`` (default: the text itself) in plain words."""
    label = QLabel(text)
    label.setToolTip(GLOSSARY[term or text])
    return label
