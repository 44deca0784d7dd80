"""AttackTrainer: metrics, checkpoints, exact resume, the generator's shape contract."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_advseg.organs import ORGAN_CLASSES
from napari_advseg.attack.config import AttackConfig
from napari_advseg.errors import AdvsegError
from napari_advseg.attack.critic import Critic
from napari_advseg.attack.generator import AttackGenerator
from napari_advseg.models.target import make_target
from napari_advseg.attack.checkpoint import load_checkpoint, load_generator
from napari_advseg.attack.trainer import AttackTrainer
from napari_advseg.models.unet import UNet2D
from napari_advseg.seeding import seeded_build

TINY = dict(batch_size=2, critic_steps=2, base_channels=4, critic_channels=4, control_spacing=4, latent_dim=3)


def tiny_target():
    torch.manual_seed(123)
    return make_target(UNet2D(base_channels=4, depth=2), device="cpu")


def tiny_data(n=6, size=24):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(n, size, size)).astype(np.float32)
    labels = np.zeros((n, size, size), np.int64)
    labels[:, 6:14, 6:14] = 1
    labels[::2, 16:20, 4:10] = 5
    return images, labels


def test_generator_shapes_any_size_and_identity_at_start():
    cfg = AttackConfig(**TINY)
    gen = AttackGenerator(cfg)
    x = torch.randn(2, 1, 23, 30)
    out = gen(x, torch.randn(2, 3), torch.randn(2, 3))
    assert out.displacement.shape == (2, 2, 23, 30)
    assert out.bias.shape == (2, 1, 23, 30)
    # decoders start at zero: an untrained generator is the identity
    assert out.displacement.abs().max().item() == 0.0 and out.bias.abs().max().item() == 0.0
    assert Critic(4)(x).shape == (2,)


def test_svf_generator_does_not_fold_where_the_direct_one_does():
    """The same weights: the decoded field used as the displacement folds, its exponential (svf) does not."""
    from napari_advseg.attack.fields import fold_fraction

    cfg = AttackConfig(**{**TINY, "control_spacing": 8}, phi_max=8.0, phi_rho_max=None, rho_max=None,
                       phi_edge_gate=None, phi_gradient_max=None, phi_integration="direct")
    torch.manual_seed(1)
    direct = AttackGenerator(cfg)
    with torch.no_grad():  # smooth fields of up to 8 px over an 8 px control grid (far steeper ones fold either way)
        for p in direct.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    svf = AttackGenerator(cfg.replace(phi_integration="svf"))
    svf.load_state_dict(direct.state_dict())
    x, eps = torch.randn(4, 1, 64, 64), torch.randn(4, 3)
    with torch.no_grad():
        folded, unfolded = direct.eval()(x, eps, eps).displacement, svf.eval()(x, eps, eps).displacement
    assert fold_fraction(folded) > 0.01
    assert fold_fraction(unfolded) == 0.0
    assert unfolded.abs().max() > 2.0


def test_gradient_cap_keeps_the_generators_jacobian_near_one():
    """The same weights: uncapped, the velocity's steep changes squeeze and stretch; capped at 0.1, det J stays
    within about exp(-0.2) .. exp(0.2)."""
    from napari_advseg.attack.fields import jacobian_determinant, largest_gradient

    cfg = AttackConfig(**{**TINY, "control_spacing": 8}, phi_max=8.0, phi_rho_max=None, rho_max=None,
                       phi_edge_gate=None, phi_gradient_max=None)
    torch.manual_seed(1)
    free = AttackGenerator(cfg)
    with torch.no_grad():
        for p in free.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    capped = AttackGenerator(cfg.replace(phi_gradient_max=0.1))
    capped.load_state_dict(free.state_dict())
    x, eps = torch.randn(4, 1, 64, 64), torch.randn(4, 3)
    with torch.no_grad():
        loose, tight = free.eval()(x, eps, eps).displacement, capped.eval()(x, eps, eps).displacement
    det_loose, det_tight = jacobian_determinant(loose), jacobian_determinant(tight)
    assert float(det_loose.min()) < 0.7 or float(det_loose.max()) > 1.4
    assert float(det_tight.min()) > 0.79 and float(det_tight.max()) < 1.25
    assert float(largest_gradient(tight).min()) > 0.02  # capped, not switched off


def test_fields_are_bounded_and_ablations_zero_the_other_field():
    cfg = AttackConfig(**TINY, phi_max=2.0, b_max=0.3, phi_integration="direct")   # svf bounds the velocity
    gen = AttackGenerator(cfg)
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(torch.randn_like(p) * 3)
    out = gen(torch.randn(2, 1, 16, 16), torch.randn(2, 3), torch.randn(2, 3))
    assert out.displacement.abs().max().item() <= 2.0 + 1e-5
    assert out.bias.abs().max().item() <= 0.3 + 1e-5
    assert out.displacement.abs().max().item() > 0
    phi_only = AttackGenerator(cfg.replace(fields="phi"))
    phi_only.load_state_dict(gen.state_dict())
    assert phi_only(torch.randn(1, 1, 16, 16)).bias.abs().max().item() == 0.0
    b_only = AttackGenerator(cfg.replace(fields="bias"))
    b_only.load_state_dict(gen.state_dict())
    assert b_only(torch.randn(1, 1, 16, 16)).displacement.abs().max().item() == 0.0


@pytest.mark.parametrize("fields", ["both", "phi", "bias"])
def test_rho_budget_caps_every_slice_and_keeps_small_ones(fields):
    from napari_advseg.attack.fields import apply_fields, perceptibility_per_slice

    torch.manual_seed(5)
    cfg = AttackConfig(**TINY, fields=fields, rho_max=None)
    gen = AttackGenerator(cfg)
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(torch.randn_like(p) * 3)
    x = torch.randn(3, 1, 20, 20) + 2.0  # noise: the hard case for rescaling a warp
    eps = torch.randn(3, 3)
    free = gen(x, eps, eps)
    rho_free = perceptibility_per_slice(apply_fields(x, free.displacement, free.bias), x)
    budget = float(rho_free.min().detach()) * 0.5
    capped_gen = AttackGenerator(cfg.replace(rho_max=budget))
    capped_gen.load_state_dict(gen.state_dict())
    capped = capped_gen(x, eps, eps)
    rho = perceptibility_per_slice(apply_fields(x, capped.displacement, capped.bias), x)
    assert torch.all(rho <= budget * 1.01) and torch.all(rho >= budget * 0.9)
    # the same fields, scaled: the bias keeps its shape
    if fields != "phi":
        ratio = capped.bias.flatten(1).norm(dim=1) / free.bias.flatten(1).norm(dim=1)
        assert torch.allclose(capped.bias, free.bias * ratio.reshape(-1, 1, 1, 1), atol=1e-5)
    # a budget above every slice's rho changes nothing
    loose = AttackGenerator(cfg.replace(rho_max=float(rho_free.max().detach()) * 2))
    loose.load_state_dict(gen.state_dict())
    assert torch.equal(loose(x, eps, eps).bias, free.bias)
    with pytest.raises(AdvsegError):
        AttackConfig(rho_max=0.0)


def test_training_under_a_rho_budget_stays_within_it():
    images, labels = tiny_data()
    cfg = AttackConfig(**TINY, rho_max=0.02, steps=3)
    trainer = AttackTrainer(cfg, tiny_target(), images, labels, "cpu")
    history = list(trainer.run())
    assert len(history) == 3
    assert all(m["rho"] <= 0.02 * 1.01 for m in history)


def test_steps_yield_finite_metrics_and_move_the_fields():
    images, labels = tiny_data()
    trainer = AttackTrainer(AttackConfig(**TINY, steps=3), tiny_target(), images, labels, device="cpu")
    records = list(trainer.run())
    assert [r["step"] for r in records] == [1, 2, 3]
    for key in ("loss_generator", "loss_critic", "wasserstein", "attack_ce", "attack_loss", "rho", "kl",
                "gradient_penalty", "realism", "seconds"):
        assert all(math.isfinite(r[key]) for r in records), key
    assert records[-1]["rho"] > 0  # the generator left the identity


def test_the_spectrum_term_is_reported_and_costs_only_when_on():
    images, labels = tiny_data()
    off = list(AttackTrainer(AttackConfig(**TINY, steps=2, lambda_spectrum=0.0), tiny_target(), images, labels,
                             device="cpu").run())
    assert all(r["bias_spectrum"] == 0.0 for r in off)
    strict = AttackConfig(**TINY, steps=2, lambda_spectrum=10.0, spectrum_short_max=0.01, spectrum_stripe_max=0.01)
    on = list(AttackTrainer(strict, tiny_target(), images, labels, device="cpu").run())
    assert on[-1]["bias_spectrum"] > 0 and math.isfinite(on[-1]["bias_spectrum"])


def test_target_weights_stay_frozen():
    images, labels = tiny_data()
    target = tiny_target()
    before = {k: v.clone() for k, v in target.model.state_dict().items()}
    trainer = AttackTrainer(AttackConfig(**TINY, steps=2), target, images, labels, device="cpu")
    list(trainer.run())
    for key, value in target.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def _weights(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_exact_resume(tmp_path):
    images, labels = tiny_data()
    cfg = AttackConfig(**TINY, steps=6, seed=7)
    straight = AttackTrainer(cfg, tiny_target(), images, labels, device="cpu")
    list(straight.run())

    first = AttackTrainer(cfg, tiny_target(), images, labels, device="cpu")
    list(first.run(steps=3))
    ckpt = first.save_checkpoint(tmp_path / "g.pt")
    del first
    resumed = AttackTrainer.resume(ckpt, tiny_target(), images, labels, device="cpu")
    assert resumed.step_count == 3
    list(resumed.run())
    assert resumed.step_count == 6
    for name, a, b in (("generator", straight.generator, resumed.generator), ("critic", straight.critic, resumed.critic)):
        wa, wb = _weights(a), _weights(b)
        for key in wa:
            assert torch.equal(wa[key], wb[key]), f"{name}.{key} differs after resume"
    assert [h["attack_ce"] for h in straight.history] == [h["attack_ce"] for h in resumed.history]


def test_building_a_trainer_leaves_the_global_generator_alone_and_threads_apart():
    """The seed sets G's and the critic's first weights without reseeding the caller's torch generator, and
    trainers built at once in two threads, beside a third loading a network, get the weights a lone build
    gets."""
    import threading

    images, labels = tiny_data()
    cfg = AttackConfig(**TINY, seed=5)
    target = tiny_target()
    alone = _weights(AttackTrainer(cfg, target, images, labels, device="cpu").generator)

    torch.manual_seed(99)
    expected_next = torch.rand(3)
    torch.manual_seed(99)
    AttackTrainer(cfg, target, images, labels, device="cpu")
    assert torch.equal(torch.rand(3), expected_next), "building a trainer reseeded torch's global generator"

    built, errors = [], []

    def build():
        try:
            for _ in range(3):
                built.append(_weights(AttackTrainer(cfg, target, images, labels, device="cpu").generator))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    def load():  # another worker loading a network all the while (its weights drawn, then replaced)
        for _ in range(20):
            with seeded_build(None):
                UNet2D(base_channels=4, depth=2)

    threads = [threading.Thread(target=build), threading.Thread(target=build), threading.Thread(target=load)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(built) == 6
    for weights in built:
        assert all(torch.equal(weights[k], alone[k]) for k in alone)


def test_checkpoint_contents_and_generator_loading(tmp_path):
    images, labels = tiny_data()
    trainer = AttackTrainer(AttackConfig(**TINY, steps=1), tiny_target(), images, labels, device="cpu")
    list(trainer.run(checkpoint_path=tmp_path / "g.pt"))
    state = torch.load(tmp_path / "g.pt", weights_only=True)
    for key in ("generator", "critic", "optimizer_generator", "optimizer_critic", "config", "step", "rng", "history"):
        assert key in state
    assert state["step"] == 1 and state["config"]["latent_dim"] == 3
    assert not list(tmp_path.glob(".*partial*"))  # no temporary files left
    generator, config, meta = load_generator(tmp_path / "g.pt", "cpu")
    assert not generator.training and config.latent_dim == 3 and meta["step"] == 1
    assert all(not p.requires_grad for p in generator.parameters())


def test_label_free_mode_and_bad_inputs(tmp_path):
    images, labels = tiny_data()
    target = tiny_target()
    trainer = AttackTrainer(AttackConfig(**TINY, steps=1), target, images, None, device="cpu")
    assert trainer.label_source == "predicted"
    with pytest.raises(AdvsegError, match="do not match"):
        AttackTrainer(AttackConfig(**TINY), target, images, labels[:, :10], device="cpu")
    with pytest.raises(AdvsegError, match="NaN"):
        bad = images.copy()
        bad[0, 0, 0] = np.nan
        AttackTrainer(AttackConfig(**TINY), target, bad, labels, device="cpu")
    with pytest.raises(AdvsegError, match="unknown organ"):
        AttackTrainer(AttackConfig(**TINY, organs=["heart"]), target, images, labels, device="cpu")
    with pytest.raises(AdvsegError, match="no training slice"):
        AttackTrainer(AttackConfig(**TINY), target, images, np.zeros_like(labels), device="cpu")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(AdvsegError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(AdvsegError, match="file not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_config_round_trip_and_validation():
    cfg = AttackConfig(organs=["liver"], gamma=1.5, rho_max=0.05)
    again = AttackConfig.from_dict(cfg.to_dict())
    assert again == cfg
    # checkpoints written before the normalisation moved to the target still load
    legacy = {**cfg.to_dict(), "normalisation": "zscore", "window": [-200.0, 300.0], "extra": {},
              "augment_shift": 8}  # a training-only option of a measured, withdrawn variant
    assert AttackConfig.from_dict(legacy) == cfg
    for bad in (dict(fields="x"), dict(critic="x"), dict(control_spacing=6), dict(gamma=-1), dict(batch_size=0)):
        with pytest.raises(AdvsegError):
            AttackConfig(**bad)
    with pytest.raises(AdvsegError, match="unknown"):
        AttackConfig.from_dict({"nonsense": 1})
    assert ORGAN_CLASSES[0] == "background"


def test_field_diversity_by_hand_and_capped():
    from napari_advseg.attack.generator import GeneratorOutput, LatentStats
    from napari_advseg.attack.latent_terms import field_diversity

    cfg = AttackConfig(phi_max=2.0, b_max=0.5, latent_dim=2, diversity_cap=10.0)
    n = 1
    phi = torch.zeros(2, 2, 4, 4)
    phi[1] = 1.0                       # |phi_1 - phi_2| = 1 everywhere -> 1 / phi_max = 0.5
    bias = torch.zeros(2, 1, 4, 4)
    bias[1] = 0.25                     # 0.25 / b_max = 0.5
    stats = LatentStats(*(torch.zeros(2, 2) for _ in range(4)))
    out = GeneratorOutput(phi, bias, torch.zeros(2, 2), torch.zeros(2, 2), stats)
    eps_phi = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    eps_b = torch.tensor([[0.0, 0.0], [2.0, 2.0]])  # mean |d eps| = 2
    assert field_diversity(out, eps_phi, eps_b, cfg, n).item() == pytest.approx(1.0 / 2.0)
    assert field_diversity(out, eps_phi, eps_b, cfg.replace(diversity_cap=0.1), n).item() == pytest.approx(0.1)
    same = GeneratorOutput(torch.zeros(2, 2, 4, 4), torch.zeros(2, 1, 4, 4), torch.zeros(2, 2), torch.zeros(2, 2),
                           stats)
    assert field_diversity(same, eps_phi, eps_b, cfg, n).item() == 0.0
    assert out.first(1).displacement.shape == (1, 2, 4, 4)


def test_training_with_the_diversity_term_is_finite_and_resumable(tmp_path):
    images, labels = tiny_data()
    cfg = AttackConfig(**TINY, steps=4, lambda_diversity=1.0)
    straight = AttackTrainer(cfg, tiny_target(), images, labels, device="cpu")
    records = list(straight.run())
    assert all(math.isfinite(r["diversity"]) for r in records)
    first = AttackTrainer(cfg, tiny_target(), images, labels, device="cpu")
    list(first.run(steps=2))
    resumed = AttackTrainer.resume(first.save_checkpoint(tmp_path / "g.pt"), tiny_target(), images, labels, "cpu")
    list(resumed.run())
    for key, value in straight.generator.state_dict().items():
        assert torch.equal(value, resumed.generator.state_dict()[key]), key


def test_a_two_sided_bias_has_a_pattern_per_sign():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 24, 24)
    for response in ("linear", "two_sided"):
        config = AttackConfig(**TINY, bias_response=response, fields="bias", bias_rho_max=None, phi_rho_max=None)
        generator = AttackGenerator(config).eval()
        assert generator.decoder_b.n_patterns == config.latent_dim * (2 if response == "two_sided" else 1)
        with torch.no_grad():
            for p in generator.decoder_b.parameters():
                p.add_(0.1 * torch.randn_like(p))
            h, _ = generator.encode(x)
            z = torch.tensor([[1.0, 0.0, 0.0]]).expand(2, -1)
            plus = generator.decoder_b(h, z)
            minus = generator.decoder_b(h, -z)
        if response == "linear":
            assert torch.allclose(minus, -plus)   # one pattern and its negative
        else:
            assert not torch.allclose(minus, -plus, atol=1e-3)   # a pattern of its own for each sign


def _reads_and_targets(trainer, steps: int) -> tuple[list, list]:
    """Run ``steps`` generator steps; what G's encoder read and the slices its fields were budgeted on, per step."""
    read, attacked = [], []
    encode, limit = trainer.generator.encode, trainer.generator.limit_rho
    trainer.generator.encode = lambda v: (read.append(v.detach().clone()), encode(v))[1]
    trainer.generator.limit_rho = lambda x, *a, **kw: (attacked.append(x.detach().clone()), limit(x, *a, **kw))[1]
    for _ in range(steps):
        trainer._generator_step()
    return read, attacked


def test_neighbour_input_feeds_the_encoder_a_neighbouring_training_slice():
    """With ``neighbour_input`` k, G's encoder reads slices at most k places from the batch's own, not always
    the same ones, while the fields are made for and budgeted on the batch; with 0 it reads the batch."""
    images, labels = tiny_data(n=6)
    for k in (0, 1):
        trainer = AttackTrainer(AttackConfig(**TINY, steps=1, neighbour_input=k, neighbour_blend=False),
                                tiny_target(), images, labels, device="cpu")
        stack = trainer.images[:, 0]
        read, attacked = _reads_and_targets(trainer, 4)
        offsets = []
        for seen, x in zip(read, attacked):
            assert seen.shape == x.shape
            for s, a in zip(seen[:, 0], x[:, 0]):
                i = next(j for j in range(len(stack)) if torch.equal(stack[j], s))
                j = next(j for j in range(len(stack)) if torch.equal(stack[j], a))
                offsets.append(i - j)
        if k == 0:
            assert set(offsets) == {0}
        else:
            assert set(offsets) <= {-1, 0, 1} and set(offsets) - {0}


def test_neighbour_input_is_the_default_for_2d_and_ignored_by_a_3d_target():
    assert AttackConfig().neighbour_input == 1 and AttackConfig().neighbour_blend
    images, labels = tiny_data(n=6)
    trainer = AttackTrainer(AttackConfig(**TINY, steps=1), tiny_target(), images, labels, device="cpu")
    assert trainer._seen(torch.tensor([0, 3])) is not None
    target = tiny_target()
    target.slab_depth = 4  # what makes a target volumetric (models.target_meta.is_volumetric)
    trainer = AttackTrainer(AttackConfig(**TINY, steps=1), target, images, labels, device="cpu")
    assert trainer._seen(torch.arange(4)) is None  # a slab holds its neighbours


def test_neighbour_blend_feeds_the_encoder_images_between_a_slice_and_its_neighbour():
    images, labels = tiny_data(n=6)
    trainer = AttackTrainer(AttackConfig(**TINY, steps=1), tiny_target(),
                            images, labels, device="cpu")
    stack = trainer.images[:, 0]
    read, attacked = _reads_and_targets(trainer, 3)
    between = 0
    for seen, x in zip(read, attacked):
        for s, a in zip(seen[:, 0], x[:, 0]):
            i = next(j for j in range(len(stack)) if torch.equal(stack[j], a))
            fits = []
            for j in (i - 1, i, i + 1):
                if 0 <= j < len(stack) and j != i:
                    d = stack[j] - stack[i]
                    t = float(((s - stack[i]) * d).sum() / (d * d).sum())
                    if 0 <= t <= 1 and torch.allclose(stack[i] + t * d, s, atol=1e-5):
                        fits.append(t)
            assert fits or torch.equal(s, stack[i])  # on a segment to a neighbour (offset 0: the slice itself)
            between += any(0.01 < t < 0.99 for t in fits)
    assert between > 0
