"""The shipped sample's recipe: phantom size, subjects, training steps and the generator's attack options.

Plain constants (no torch), read by :func:`napari_advseg.workflows.make_sample_data`
and by ``advseg make-sample``'s parser for its defaults.
"""

from __future__ import annotations

PHANTOM_SHAPE = (48, 128, 128)
"""Phantom volume size (Z, Y, X), in voxels."""
SAMPLE_SEED = 0
"""Phantom subject of the shipped test volume."""
TRAINING_SUBJECTS = tuple(range(1, 9))
"""Phantom subjects the shipped U-Net learns from."""
ATTACK_SUBJECTS = tuple(range(1, 25))
"""Phantom subjects the shipped generator learns from: more than the U-Net's, so that the attack carries
over to the unseen subject 0."""
UNET_STEPS = 1500
"""Training steps of the shipped U-Net."""
ATTACK_STEPS = 1000
"""Training steps of the shipped generator."""
SAMPLE_RHO_MAX = 0.08
"""The shipped generator's hard budget on rho (Eq. 7), the strength the sample is held to."""
SAMPLE_ATTACK_OPTIONS = {"phi_rho_max": 0.08, "bias_rho_max": 0.08, "attack_reduction": "organs_squared",
                         "single_alone": True, "lambda_alone": 1.0, "lambda_excess": 1.0, "lambda_mean": 20.0,
                         "neighbour_input": 0, "neighbour_blend": False}
"""The shipped generator's ``AttackConfig`` fields beside the defaults: a budget of 0.08 per field, under
``SAMPLE_RHO_MAX`` on the whole, and the squared per-organ attack loss (the organ least attacked pulls
hardest), so that every phantom organ passes the paper's 30 % bar with realistic fields; the latent-slider
terms on (``attack.config.SLIDER_OPTIONS_ON``), since the sample is where the Explore tab is shown (the
measurements are in the docs); no neighbour input, as the generator learns from 24 subjects stacked (a
slice's neighbour at a subject's edge would be another subject's) and was trained without it."""
