"""Baseline attacks the generator is compared against, all at a fixed perceptibility rho.

Every attack works on a batch of normalised slices ``x`` ``(N, 1, H, W)`` with
integer reference labels ``y`` ``(N, H, W)`` and returns an
:class:`AttackResult`. Each one is scaled so that every slice's perceptibility
(Eq. 7, ``||x_adv_n - x_n||_2 / ||x_n||_2``, dimensionless) equals the
requested ``rho``, so the attacks can be compared at an equal budget:

``random_smooth_fields``
    What an augmentation library draws (cf. TorchIO's RandomElasticDeformation
    and RandomBiasField): Gaussian control-point displacements and bias on a
    coarse grid, upsampled bicubically. No target network involved.
``optimised_smooth_fields``
    The same smooth fields, optimised per image by gradient ascent on the
    masked cross-entropy of the frozen target (advchain-style).
``pgd_l2``
    Projected gradient descent (ascent) with an L2 constraint on the
    intensities alone.
``segpgd``
    SegPGD (Gu et al., ECCV 2022): PGD-L2 whose loss shifts its weight from
    correctly to wrongly classified pixels over the steps.

Fields are rescaled to the budget by bisection on a scalar multiplier (warping
is nonlinear in the displacement, so no closed form exists); intensity
perturbations are projected on the L2 ball of radius ``rho * ||x_n||_2``.

Modules: :mod:`.common` (the result type and per-slice helpers every attack
shares), :mod:`.smooth_fields` (the two field attacks), :mod:`.field_scaling` (the
rescaling of fields to rho), :mod:`.pgd` (PGD-L2 and SegPGD), :mod:`.registry`
(:data:`~.registry.ATTACKS`, which maps names to callables with the uniform
signature ``fn(x, y, target, rho, rng, **options)``, and the trained generator
as a peer). They are scored by :func:`napari_advseg.evaluation.baselines.evaluate_baseline`,
with the same counting as the generator's report.
"""
