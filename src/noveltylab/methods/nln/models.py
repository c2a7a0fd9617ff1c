"""The five autoencoding families of paper 000 as one torch container.

``family`` is one of ``ae`` (vanilla AE), ``aae`` (adversarial AE: latent
discriminator against an N(0, I) prior), ``vae`` (variational AE; scored
with the mean), ``aeres`` (AE with an image discriminator whose
intermediate layer gives the residual error of Eq. 7) and ``aecon``
(GANomaly-style: image discriminator plus a second encoder E2 for the
feature-consistency error of Eq. 8). ``kind`` picks the network shapes:
``lenet`` (28/32 px images) or ``patch`` (square patches, 128 px in the paper).
"""
from __future__ import annotations

import torch
from torch import nn

from ...nets.nln_nets import (ImageDiscriminator, LatentDiscriminator, LeNetDecoder, LeNetEncoder, PatchDecoder,
                              PatchEncoder)

FAMILIES = ("ae", "aae", "vae", "aeres", "aecon")
# the error each family scores with when ``error="auto"``
NATIVE_ERROR = {"ae": "recon", "aae": "recon", "vae": "recon", "aeres": "residual", "aecon": "consistency"}


class NLNNetworks(nn.Module):
    """Encoder f, decoder g and the family's extra networks (``disc_z``, ``disc_x``, ``encoder2``)."""

    def __init__(self, family: str, kind: str, channels: int, height: int, width: int, latent_dim: int,
                 filters: int) -> None:
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"unknown NLN family {family!r}; use one of {FAMILIES}")
        self.family = family
        self.kind = kind
        vae = family == "vae"

        def encoder(as_vae: bool = False) -> nn.Module:
            if kind == "lenet":
                return LeNetEncoder(channels, height, width, latent_dim, filters, vae=as_vae)
            return PatchEncoder(channels, height, latent_dim, filters, vae=as_vae)

        self.encoder = encoder(vae)
        self.decoder = (LeNetDecoder(channels, height, width, latent_dim, filters) if kind == "lenet"
                        else PatchDecoder(channels, height, latent_dim, filters))
        self.disc_z = LatentDiscriminator(latent_dim) if family == "aae" else None
        self.disc_x = ImageDiscriminator(encoder(), latent_dim) if family in ("aeres", "aecon") else None
        self.encoder2 = encoder() if family == "aecon" else None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Latent code used for the neighbour search (the mean for the VAE)."""
        return self.encoder.encode(x)[0]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """g(f(x)) with the mean code (deterministic, also for the VAE)."""
        return self.decoder(self.encode(x))

    def q(self, x: torch.Tensor) -> torch.Tensor:
        """Intermediate discriminator layer q(x) of Eq. 7 (AE-res / AE-con)."""
        assert self.disc_x is not None
        return self.disc_x(x)[0]

    def modules_dict(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {"encoder": self.encoder, "decoder": self.decoder}
        for name in ("disc_z", "disc_x", "encoder2"):
            m = getattr(self, name)
            if m is not None:
                out[name] = m
        return out
