"""The registered NLN detectors: five autoencoding families x {LeNet (28/32 px), patch (localising)}.

Registered names: ``nln-ae``, ``nln-aae``, ``nln-vae``, ``nln-aeres``,
``nln-aecon`` (LeNet-type networks; inputs padded to a multiple of 4, sides
above ``max_side`` resized down first) and ``nln-ae-patch``,
``nln-aae-patch``, ``nln-vae-patch``, ``nln-aeres-patch``,
``nln-aecon-patch`` (patch networks; images resized to ``image_size``, cut
into ``patch_size`` patches; ``anomaly_map`` available).

Scoring parameters (no retraining needed to change them, see
:meth:`NLNDetector.set_scoring`): ``nln`` (NLN score of Eq. 4/7/8, or the
plain reconstruction / residual / consistency score), ``error`` (``auto`` =
the family's own error; ``recon`` works for every family), ``k`` (K, number
of latent neighbours), ``alpha`` (weight of the error term).
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ...detector import Detector, load_module_state, module_state, register
from ...images import ImageError, iter_batches, pad_to_multiple, resize
from ...knn import KNNIndex
from ...train import map_batches, train_loop
from . import scoring
from .models import FAMILIES, NATIVE_ERROR, NLNNetworks
from .patches import augmented_crops, grid_patches, stitch
from .training import DISC_LOSSES, make_step

ERRORS = ("auto", "recon", "residual", "consistency")
# the authors' learning rates (Adam): (autoencoder, adversarial)
PAPER_LR = {"ae": (1e-3, 1e-5), "vae": (1e-3, 1e-5), "aae": (1e-5, 1e-5), "aeres": (1e-3, 1e-5),
            "aecon": (1e-4, 1e-4)}
# faster schedule for the short cpu profile (the 1e-5 rates need the full 50 epochs)
CACHE_LIMIT = 150_000_000  # floats (600 MB) of decoded training codes kept for neighbour look-ups
CPU_LR = {"ae": (1e-3, 1e-4), "vae": (1e-3, 1e-4), "aae": (1e-3, 1e-4), "aeres": (1e-3, 1e-4),
          "aecon": (1e-3, 1e-4)}


class NLNDetector(Detector):
    """Shared machinery of every NLN detector (see the module docstring)."""

    family: ClassVar[str] = ""
    kind: ClassVar[str] = "lenet"

    def __init__(self, nln: bool = True, error: str = "auto", k: int = 5, alpha: float = 0.6,
                 latent_dim: int = 32, filters: int = 32, epochs: int = 50, batch_size: int = 128,
                 lr: float | None = None, adv_lr: float | None = None, recon_weight: float = 50.0,
                 max_side: int = 64, index: str = "Flat", val_fraction: float = 0.1, score_batch: int = 256,
                 disc_loss: str = "paper", channels_last: bool = False, seed: int = 0,
                 device: str = "auto") -> None:
        super().__init__(seed=seed, device=device)
        self.nln = nln
        self.error = error
        self.k = k
        self.alpha = alpha
        self.latent_dim = latent_dim
        self.filters = filters
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.adv_lr = adv_lr
        self.recon_weight = recon_weight
        self.max_side = max_side
        self.index = index
        self.val_fraction = val_fraction
        self.score_batch = score_batch
        self.disc_loss = disc_loss
        self.channels_last = channels_last

    # --- parameters ---------------------------------------------------------------------
    def _error_kind(self) -> str:
        return NATIVE_ERROR[self.family] if self.error == "auto" else self.error

    def _check_scoring(self) -> None:
        if not isinstance(self.nln, (bool, np.bool_)):
            raise ValueError(f"nln must be True or False, got {self.nln!r}")
        if self.error not in ERRORS:
            raise ValueError(f"error must be one of {ERRORS}, got {self.error!r}")
        err = self._error_kind()
        if err == "residual" and self.family not in ("aeres", "aecon"):
            raise ValueError(f"error='residual' needs an image discriminator (nln-aeres / nln-aecon), "
                             f"not {self.name!r}")
        if err == "consistency" and self.family != "aecon":
            raise ValueError(f"error='consistency' needs the second encoder of nln-aecon, not {self.name!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 1:
            raise ValueError(f"k (number of latent neighbours K) must be an integer >= 1, got {self.k!r}")
        if not 0.0 <= float(self.alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha!r}")

    def _check_params(self) -> None:
        self._check_scoring()
        for name in ("latent_dim", "filters", "batch_size", "score_batch"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, np.integer)) or self.epochs < 0:
            raise ValueError(f"epochs must be an integer >= 0, got {self.epochs!r}")
        for name in ("lr", "adv_lr"):
            v = getattr(self, name)
            if v is not None and not float(v) > 0:
                raise ValueError(f"{name} must be positive (or None for the family default), got {v!r}")
        if not float(self.recon_weight) > 0:
            raise ValueError(f"recon_weight must be positive, got {self.recon_weight!r}")
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.disc_loss not in DISC_LOSSES:
            raise ValueError(f"disc_loss must be one of {DISC_LOSSES}, got {self.disc_loss!r}")
        if self.disc_loss != "paper" and self.family != "aeres":
            raise ValueError(f"disc_loss={self.disc_loss!r} is the authors' AE-res discriminator loss; "
                             f"{self.name!r} has no such variant (use nln-aeres or disc_loss='paper')")
        if hasattr(self, "max_side") and int(self.max_side) < 8:
            raise ValueError(f"max_side must be >= 8, got {self.max_side!r}")

    def _rates(self) -> tuple[float, float]:
        lr, adv = PAPER_LR[self.family]
        return (float(self.lr) if self.lr is not None else lr, float(self.adv_lr) if self.adv_lr is not None else adv)

    # --- preprocessing (LeNet: resize large inputs, pad to a multiple of 4) ----------------------
    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = int(self.max_side)
        if max(h, w) > m:
            s = m / max(h, w)
            x = resize(x, (max(4, round(h * s)), max(4, round(w * s))))
        return pad_to_multiple(x, 4)

    def _net_shape(self) -> tuple[int, int, int]:
        c = self.input_shape_[0]
        h, w = self._prep(torch.zeros((1, *self.input_shape_))).shape[-2:]
        return c, int(h), int(w)

    def _build(self) -> NLNNetworks:
        c, h, w = self._net_shape()
        return NLNNetworks(self.family, self.kind, c, h, w, int(self.latent_dim), int(self.filters)).to(self.device_)

    # --- fitting --------------------------------------------------------------------------
    def _split_val(self, x: torch.Tensor, val: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if val is not None:
            return x, val
        n = x.shape[0]
        n_val = max(1, int(round(n * float(self.val_fraction))))
        if n - n_val < 2:
            raise ImageError(f"{self.name}: need at least 3 training images to carve a validation split, got {n}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + 1))
        return x[perm[n_val:]], x[perm[:n_val]]

    def _train_units(self, x: torch.Tensor) -> torch.Tensor:
        """The network inputs built from training images (LeNet: the prepared images themselves)."""
        return self._prep(x)

    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        self._check_params()
        x, val = self._split_val(x, val)
        units = self._train_units(x)
        self.nets_ = self._build()
        self._cache_store = {}
        lr, adv_lr = self._rates()
        step = make_step(self.nets_, lr, adv_lr, float(self.recon_weight), seed=self.seed,
                         disc_loss=str(self.disc_loss))
        self.history_ = train_loop(step, units, modules=self.nets_.modules_dict(), epochs=int(self.epochs),
                                   batch_size=int(self.batch_size), device=self.device_, seed=self.seed,
                                   desc=self.name, channels_last=bool(self.channels_last))
        self.nets_.eval()
        self.z_train_ = map_batches(self.nets_.encode, units, batch_size=int(self.score_batch),
                                    device=self.device_).float()
        self.index_ = KNNIndex(self.index, gpu="auto", seed=self.seed).fit(self.z_train_.numpy())
        self._calibrate_norm(val)

    # --- scoring ----------------------------------------------------------------------------
    def _k_eff(self) -> int:
        return int(min(int(self.k), self.index_.ntotal))

    def _cache(self) -> torch.Tensor | None:
        """Decoded training codes for the neighbour look-ups (built on first use, not saved;
        skipped above ``CACHE_LIMIT`` floats, then neighbours are decoded per batch)."""
        err = self._error_kind()
        if not self.nln or err not in ("recon", "residual"):
            return None
        cache = getattr(self, "_cache_store", {})
        if err not in cache:
            n = self.z_train_.shape[0]
            per = int(np.prod(self._net_shape())) if err == "recon" else int(self.latent_dim)
            if n * per > CACHE_LIMIT:
                return None
            self.nets_.eval()
            cache[err] = scoring.decoded_cache(self.nets_, self.z_train_, err, self.device_, int(self.score_batch))
            self._cache_store = cache
        return cache[err]

    def _terms(self, units: torch.Tensor, pixel_maps: bool = False) -> scoring.Terms:
        self.nets_.eval()
        z_train = self.z_train_ if self.nln else None
        cache = self._cache()
        out = [scoring.batch_terms(self.nets_, self.index_ if self.nln else None, z_train, b.to(self.device_),
                                   self._k_eff(), self._error_kind(), bool(self.nln), pixel_maps, cache)
               for b in iter_batches(units, int(self.score_batch))]
        return scoring.concat(out)

    def _calibrate_norm(self, val: torch.Tensor) -> None:
        """Min-max constants of both NLN terms on normal validation images."""
        t = self._terms(self._prep(val))
        self.norm_ = {"error": scoring.minmax(t.error),
                      "distance": scoring.minmax(t.distance) if t.distance is not None else [0.0, 1.0]}

    def _score(self, x: torch.Tensor) -> np.ndarray:
        return scoring.combine(self._terms(self._prep(x)), self.norm_, float(self.alpha), bool(self.nln))

    def set_scoring(self, val: Any, **params: Any) -> "NLNDetector":
        """Change scoring parameters (``nln``, ``error``, ``k``, ``alpha``) of a fitted model without
        retraining; the normalisation constants are re-measured on the normal images ``val``."""
        from ...images import as_images

        self._check_fitted()
        allowed = {"nln", "error", "k", "alpha"} | ({"alpha_convention"} if hasattr(self, "alpha_convention") else set())
        bad = set(params) - allowed
        if bad:
            raise ValueError(f"set_scoring changes only {sorted(allowed)}, not {sorted(bad)}")
        old = {p: getattr(self, p) for p in params}
        for p, v in params.items():
            setattr(self, p, v)
        try:
            self._check_scoring()
        except ValueError:
            for p, v in old.items():
                setattr(self, p, v)
            raise
        v = as_images(val, name="validation images")
        if tuple(v.shape[1:]) != tuple(self.input_shape_):
            raise ImageError(f"validation images have shape {tuple(v.shape[1:])}, model expects {self.input_shape_}")
        with torch.no_grad():
            self._calibrate_norm(v)
        return self

    # --- persistence ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = dict(module_state("nets", self.nets_))
        state["z_train"] = self.z_train_
        state.update(self.index_.state("knn")[0])
        return state

    def _meta(self) -> dict[str, Any]:
        return {"norm": self.norm_, "knn": self.index_.state("knn")[1], "rates": list(self._rates())}

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self.nets_ = self._build()
        load_module_state("nets", self.nets_, state)
        self.nets_.eval()
        self.z_train_ = state["z_train"].float()
        self.index_ = KNNIndex.from_state(state, meta["knn"], "knn")
        self.norm_ = meta["norm"]


ALPHA_CONVENTIONS = ("paper", "authors-code")


class NLNPatchDetector(NLNDetector):
    """Localising variant: resize to ``image_size``, non-overlapping ``patch_size`` patches
    (training adds ``crops_per_image`` random crops with random rot90), one NLN search per patch,
    error maps stitched back; the image score is ``alpha * mean(error map) + (1 - alpha) *
    max(patch distance)`` on the normalised terms (the plain mean error without NLN).

    ``alpha_convention``: ``"paper"`` (default) weights the error term by ``alpha`` as Eq. 4
    states; ``"authors-code"`` swaps the weights, ``(1 - alpha) * error + alpha * distance``, as
    the authors' MVTec evaluation code does (for both the map and the image score)."""

    kind = "patch"
    localises = True

    def __init__(self, nln: bool = True, error: str = "auto", k: int = 1, alpha: float = 0.6,
                 latent_dim: int = 128, filters: int = 32, epochs: int = 50, batch_size: int = 64,
                 lr: float | None = None, adv_lr: float | None = None, recon_weight: float = 50.0,
                 image_size: int = 512, patch_size: int = 128, crops_per_image: int = 16, rot90: bool = True,
                 index: str = "Flat", val_fraction: float = 0.1, score_batch: int = 64,
                 alpha_convention: str = "paper", disc_loss: str = "paper", channels_last: bool = False,
                 seed: int = 0, device: str = "auto") -> None:
        super().__init__(nln=nln, error=error, k=k, alpha=alpha, latent_dim=latent_dim, filters=filters,
                         epochs=epochs, batch_size=batch_size, lr=lr, adv_lr=adv_lr, recon_weight=recon_weight,
                         index=index, val_fraction=val_fraction, score_batch=score_batch, disc_loss=disc_loss,
                         channels_last=channels_last, seed=seed, device=device)
        del self.max_side  # not a parameter of the patch models
        self.alpha_convention = alpha_convention
        self.image_size = image_size
        self.patch_size = patch_size
        self.crops_per_image = crops_per_image
        self.rot90 = rot90

    def _check_params(self) -> None:
        super()._check_params()
        p, s = int(self.patch_size), int(self.image_size)
        if p < 8 or (p & (p - 1)) != 0:
            raise ValueError(f"patch_size must be a power of two >= 8, got {self.patch_size!r}")
        if s < p or s % p:
            raise ValueError(f"image_size ({s}) must be a multiple of patch_size ({p})")
        if int(self.crops_per_image) < 0:
            raise ValueError(f"crops_per_image must be >= 0, got {self.crops_per_image!r}")

    def _check_scoring(self) -> None:
        super()._check_scoring()
        if self.alpha_convention not in ALPHA_CONVENTIONS:
            raise ValueError(f"alpha_convention must be one of {ALPHA_CONVENTIONS}, got {self.alpha_convention!r}")

    @property
    def error_weight(self) -> float:
        """Weight of the error term under ``alpha_convention`` (the distance term gets 1 minus it)."""
        a = float(self.alpha)
        return a if self.alpha_convention == "paper" else 1.0 - a

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        return resize(x, int(self.image_size))

    def _net_shape(self) -> tuple[int, int, int]:
        return self.input_shape_[0], int(self.patch_size), int(self.patch_size)

    def _train_units(self, x: torch.Tensor) -> torch.Tensor:
        xs = self._prep(x)
        grid = grid_patches(xs, int(self.patch_size))
        crops = augmented_crops(xs, int(self.patch_size), int(self.crops_per_image), bool(self.rot90), self.seed + 2)
        return torch.cat([grid, crops])

    def _patch_terms(self, x: torch.Tensor) -> tuple[scoring.Terms, int]:
        return self._terms(grid_patches(self._prep(x), int(self.patch_size)), pixel_maps=True), x.shape[0]

    def _calibrate_norm(self, val: torch.Tensor) -> None:
        t, _ = self._patch_terms(val)
        self.norm_ = {"error": scoring.minmax(t.error),
                      "distance": scoring.minmax(t.distance) if t.distance is not None else [0.0, 1.0]}

    def _maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(combined NLN map, distance map or None) at ``image_size``, before resizing back."""
        t, n = self._patch_terms(x)
        s, p = int(self.image_size), int(self.patch_size)
        combined = torch.from_numpy(scoring.combine(t, self.norm_, self.error_weight, bool(self.nln)))
        err = torch.from_numpy(scoring.normalise(t.error, self.norm_["error"]) if self.nln else t.error)
        dist = None
        if t.distance is not None:
            d = scoring.normalise(t.distance, self.norm_["distance"])
            dist = torch.from_numpy(d).view(n, -1)
        return stitch(combined, n, s), (stitch(err, n, s), dist)  # type: ignore[return-value]

    def _score(self, x: torch.Tensor) -> np.ndarray:
        _, (err, dist) = self._maps(x)
        if dist is None:
            return err.flatten(1).mean(1).numpy()
        a = self.error_weight
        return (a * err.flatten(1).mean(1) + (1 - a) * dist.max(1).values).numpy()

    def _anomaly_map(self, x: torch.Tensor) -> np.ndarray:
        combined, _ = self._maps(x)
        h, w = x.shape[-2:]
        m = combined[:, None].float()
        if tuple(m.shape[-2:]) != (h, w):
            m = torch.nn.functional.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)
        return m[:, 0].numpy()


# --- registration ----------------------------------------------------------------------------
_DESCR = {"ae": "vanilla autoencoder", "aae": "adversarial autoencoder (latent discriminator, N(0,I) prior)",
          "vae": "variational autoencoder (scored with the mean)",
          "aeres": "autoencoder + image discriminator (residual error, Eq. 7)",
          "aecon": "GANomaly-style autoencoder + second encoder (feature consistency, Eq. 8)"}


def _lenet_profiles(fam: str) -> dict[str, dict[str, Any]]:
    lr, adv = CPU_LR[fam]
    gan = fam in ("aae", "aeres", "aecon")  # adversarial families: fewer demo epochs (3 updates per step)
    return {
        # paper: the authors' scripts (50 epochs, their Adam rates, L = 32, K fixed in advance)
        "paper": {"epochs": 50},
        # cpu: minutes per MNIST class on two cores; larger rates make up for the short schedule
        # (benchmarks add --max-train 1000 for SIMO, 2000 for MISO)
        "cpu": {"epochs": 8, "batch_size": 64, "lr": lr, "adv_lr": adv},
        # demo: 8x8 digits, ~120 images per class
        "demo": {"epochs": 5 if gan else 10, "batch_size": 32, "lr": lr, "adv_lr": adv, "latent_dim": 16,
                 "filters": 16},
        # AE-con's consistency score needs a few more updates to rank digits at all
        "test": {"epochs": 4 if fam == "aecon" else 2, "batch_size": 32, "lr": lr, "adv_lr": adv, "latent_dim": 8,
                 "filters": 8},
    }


def _patch_profiles(fam: str) -> dict[str, dict[str, Any]]:
    lr, adv = CPU_LR[fam]
    return {
        # paper: 128 px patches of 512 px images (the authors' 16 patches per image), L = 128, K = 1
        "paper": {"epochs": 50},
        # cpu: images resized to 256, 64 px patches, 4 crops per image
        "cpu": {"image_size": 256, "patch_size": 64, "crops_per_image": 4, "epochs": 15, "latent_dim": 64,
                "lr": lr, "adv_lr": adv},
        "demo": {"image_size": 16, "patch_size": 8, "crops_per_image": 1, "epochs": 5, "latent_dim": 16,
                 "filters": 8, "batch_size": 64, "lr": lr, "adv_lr": adv},
        "test": {"image_size": 16, "patch_size": 8, "crops_per_image": 0, "epochs": 1, "latent_dim": 8,
                 "filters": 8, "batch_size": 64, "lr": lr, "adv_lr": adv},
    }


def _make(fam: str, patch: bool) -> type[NLNDetector]:
    base = NLNPatchDetector if patch else NLNDetector
    name = f"nln-{fam}" + ("-patch" if patch else "")
    summary = (f"NLN (paper 000) on a {_DESCR[fam]}"
               + (", 128 px patch network with pixel maps" if patch else ", LeNet-type 28/32 px networks"))
    cls = type(f"NLN{fam.upper()}{'Patch' if patch else ''}", (base,),
               {"name": name, "family": fam, "summary": summary,
                "profiles": _patch_profiles(fam) if patch else _lenet_profiles(fam),
                "__doc__": f"{summary}. See :class:`{base.__name__}` for the parameters.",
                "__module__": __name__})
    return register(cls)


DETECTORS = {f"nln-{f}" + ("-patch" if p else ""): _make(f, p) for f in FAMILIES for p in (False, True)}
