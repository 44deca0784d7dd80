"""The layers G is assembled from: the encoder, a VAE head and a field decoder.

Each works on the coarse control-point grid; :class:`~napari_advseg.attack.generator.AttackGenerator`
upsamples the decoded fields to the slice size.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Encoder", "FieldDecoder", "LatentHead"]


def _conv_block(in_ch: int, out_ch: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.LeakyReLU(0.2, inplace=True),
    )


class Encoder(nn.Module):
    """Strided convolutions down to the control-point grid: ``(N,1,H,W) -> (N,C,H/s,W/s)``."""

    def __init__(self, base: int, levels: int):
        super().__init__()
        layers: list[nn.Module] = [_conv_block(1, base)]
        ch = base
        for level in range(levels):
            out = min(base * 2 ** (level + 1), base * 8)
            layers += [_conv_block(ch, out, stride=2), _conv_block(out, out)]
            ch = out
        self.body = nn.Sequential(*layers)
        self.out_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class LatentHead(nn.Module):
    """A VAE head: pooled features -> (mu, logvar) of one latent code."""

    def __init__(self, in_ch: int, latent_dim: int):
        super().__init__()
        self.fc = nn.Linear(2 * in_ch, 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = torch.cat((h.mean(dim=(2, 3)), h.amax(dim=(2, 3))), dim=1)
        mu, logvar = self.fc(pooled).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 4.0)


class FieldDecoder(nn.Module):
    """Features ``h`` and a latent code -> a coarse field.

    ``mode="basis"``: the decoder sees ``h`` only and returns one field
    pattern per latent number; the field is ``sum_k z_k B_k(h)``, linear in
    the code, so each latent number moves the field along a pattern of its
    own (and ``z = 0`` is the identity). With ``two_sided`` each number has
    two patterns, one per sign: ``sum_k relu(z_k) P_k(h) + relu(-z_k) N_k(h)``
    (``AttackConfig.phi_response``, ``bias_response``). ``mode="concat"``: the code is
    broadcast over space and concatenated with ``h`` (checkpoints made with
    that decoder load with it). The last convolution starts at zero, so an untrained
    generator is the identity (phi = 0, b = 0) and training moves away from it.
    """

    def __init__(self, in_ch: int, latent_dim: int, out_channels: int, width: int, mode: str = "concat",
                 two_sided: bool = False):
        super().__init__()
        self.mode = mode
        self.two_sided = two_sided and mode == "basis"
        self.latent_dim = latent_dim
        self.n_patterns = latent_dim * (2 if self.two_sided else 1)
        self.out_channels = out_channels
        extra = latent_dim if mode == "concat" else 0
        self.body = nn.Sequential(
            _conv_block(in_ch + extra, width),
            _conv_block(width, width),
        )
        patterns = out_channels * self.n_patterns if mode == "basis" else out_channels
        self.head = nn.Conv2d(width, patterns, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def patterns(self, h: torch.Tensor) -> torch.Tensor:
        """The field patterns of the basis mode, ``(N, P, C, h, w)``: ``B_k(h)`` (P = latent_dim), or
        ``P_k`` then ``N_k`` (P = 2 latent_dim) when two-sided."""
        out = self.head(self.body(h))
        return out.reshape(out.shape[0], self.n_patterns, self.out_channels, *out.shape[2:])

    def weights(self, z: torch.Tensor) -> torch.Tensor:
        """The code's weight on each pattern: ``z``, or ``(relu(z), relu(-z))`` when two-sided."""
        return torch.cat((F.relu(z), F.relu(-z)), dim=1) if self.two_sided else z

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.mode == "basis":
            return torch.einsum("nkchw,nk->nchw", self.patterns(h), self.weights(z.to(h)))
        z_map = z[:, :, None, None].expand(-1, -1, h.shape[2], h.shape[3])
        return self.head(self.body(torch.cat((h, z_map), dim=1)))
