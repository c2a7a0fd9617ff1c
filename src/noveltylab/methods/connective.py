"""Connective reconstruction-based novelty detection (paper 001, "CRBND").

Two networks trained one after the other on normal ("positive") images only:

1. The reconstructor ``A``: a residual denoising autoencoder with short skips
   and no encoder-decoder long skips (:class:`~noveltylab.nets.residual_ae.
   ResidualDenoisingAE`), trained with the Charbonnier loss
   ``sqrt((x - A(x~))^2 + eps^2)`` (eps = 1e-3) from corrupted inputs ``x~`` to
   the clean target ``x``. Two corruption schemes (``ae_corruption``):
   ``"paper"`` (default, Eq. 1-2 of the paper's text): *every* input gets
   Gaussian noise and then coarse dropout, ``x_c = x_g - beta * x_g`` with
   ``x_g = x + eta`` (noise std ~ U(0, 0.2), dropout p 0.5 on a
   40 %-resolution grid), regenerated every time it is drawn; ``"authors-code"``:
   the clean images plus corrupted copies, each with *one* corruption: coarse
   dropout (p 0.5 on a 40 %-resolution grid), motion blur, coarse dropout
   (p 0.7 on a 60 % grid), additive Gaussian noise (std ~ U(0, 0.2)).
2. The binary classifier ``C`` (:class:`~noveltylab.nets.residual_ae.
   SmallClassifier`), trained on connective positives
   ``x_CP = lam x + (1 - lam) A(x)`` (Eq. 4) against connective negatives
   ``x_CN = lam x + (1 - lam) d(.)`` (Eq. 5), where ``d`` is motion blur
   (kernel 5) or Gaussian noise applied to the original image (the authors'
   code: ``d(x)``) or to the reconstruction (``d(A(x))``). Negatives are
   regenerated every time a batch is drawn.

Score (Eq. 6): ``C(lam x + (1 - lam) A(x))``'s probability of "negative".

Inputs of any size are resized (bilinear, antialiased) to ``image_size`` x
``image_size`` (32 in the paper, which resizes MNIST 28 -> 32); 1 or 3
channels are kept as they are. Augmentations: motion blur is
``kornia.augmentation.RandomMotionBlur`` (kornia needs odd kernels: the
authors' AE motion-blur kernel 10 becomes 9); Gaussian noise with a per-image
random std and imgaug-style coarse dropout (a Bernoulli mask drawn on a
low-resolution grid and upsampled with nearest neighbour, which kornia does not
provide; ``RandomErasing`` erases one rectangle, a different corruption) are
vectorised tensor operations.

Departures from the authors' code, on purpose: no checkpoint is chosen on test
data (the authors picked the AE epoch by test AUROC); fixed schedules instead.
The classifier's number of epochs is not given by the paper (20 here).

Ablations are parameters (see :class:`Connective`): ``mix="input"`` (no
connective mixing: the classifier sees ``x`` vs ``d(x)`` and scores ``x``; no
AE is trained), ``mix="reconstruction"`` (classifier on ``A(x)`` vs
``d(A(x))``), ``denoise=False`` (AE trained on clean images only) and
``score_mode="reconstruction-error"`` (mean Charbonnier error of the AE, no
classifier).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..detector import Detector, load_module_state, module_state, register
from ..images import resize
from ..nets.residual_ae import ResidualDenoisingAE, SmallClassifier
from ..train import map_batches, train_loop

_NEGATIVES = ("motion-blur", "gaussian-noise", "both")
_NEGATIVE_ON = ("input", "reconstruction")
_MIX = ("connective", "input", "reconstruction")
_AE_CORRUPTIONS = ("paper", "authors-code")
_SCORE_MODES = ("classifier", "reconstruction-error")
_SCORE_OUTPUTS = ("probability", "log-odds")


# --- corruptions (kornia for motion blur; the rest are vectorised tensor ops) ---------------------
def motion_blur(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Random-direction motion blur (kornia), one random angle/direction per image."""
    import kornia.augmentation as KA

    aug = KA.RandomMotionBlur(kernel_size=kernel, angle=(-180.0, 180.0), direction=(-1.0, 1.0),
                              border_type="reflect", p=1.0)
    return aug(x).clamp(0.0, 1.0)


def gaussian_noise(x: torch.Tensor, max_std: float, random_std: bool = True) -> torch.Tensor:
    """Additive Gaussian noise; std ~ U(0, max_std) per image (or exactly ``max_std``), clipped to [0, 1]."""
    n = x.shape[0]
    std = (torch.rand(n, device=x.device) * max_std) if random_std else torch.full((n,), max_std, device=x.device)
    return (x + torch.randn_like(x) * std.view(n, 1, 1, 1)).clamp(0.0, 1.0)


def coarse_dropout(x: torch.Tensor, p: float, size_fraction: float) -> torch.Tensor:
    """imgaug-style coarse dropout (Eq. 2): zero the pixels of rectangles drawn as
    Bernoulli(p) cells of a grid at ``size_fraction`` of the image resolution
    (same mask for all channels)."""
    n, _, h, w = x.shape
    gh, gw = max(1, int(round(h * size_fraction))), max(1, int(round(w * size_fraction)))
    keep = (torch.rand(n, 1, gh, gw, device=x.device) >= p).float()
    return x * F.interpolate(keep, size=(h, w), mode="nearest")


def charbonnier(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """Element-wise Charbonnier penalty sqrt((a - b)^2 + eps^2) (Eq. 3)."""
    return torch.sqrt((a - b).pow(2) + eps * eps)


@register
class Connective(Detector):
    """Connective reconstruction-based novelty detection (paper 001).

    Parameters
    ----------
    lam: weight of the original image in connective samples (0.5).
    negative: distortion ``d`` that makes negatives: "motion-blur" (the
        authors' choice), "gaussian-noise" or "both" (each negative picks one
        at random).
    negative_on: apply ``d`` to the "input" (authors' code) or to the
        "reconstruction" (the paper's Fig. 2 description).
    blur_kernel / noise_std: strength of the negatives' motion blur (odd
        kernel, 5) and Gaussian noise (fixed std, 0.2).
    mix: "connective" (the method), "input" (ablation: no connective mixing,
        classifier on ``x``; no AE is trained) or "reconstruction" (ablation:
        classifier on ``A(x)`` only).
    denoise: corrupt the AE inputs (True) or train it on clean images (ablation).
    ae_corruption: "paper" (Eq. 1-2: Gaussian noise, then coarse dropout, on
        every AE input; the default) or "authors-code" (clean images plus
        copies with one corruption each: dropout, motion blur, dropout, noise).
    score_mode: "classifier" (Eq. 6) or "reconstruction-error" (ablation:
        mean Charbonnier error of the AE, no classifier).
    score_output: "probability" (P(negative), Eq. 6) or "log-odds" (same
        ranking, no saturation at 0/1).
    ae_copies: with ``ae_corruption="authors-code"``: True = every epoch has
        the clean images plus one copy per corruption (5x the data, the
        authors' scheme); False = each image is drawn with one random
        corruption (or clean) per step (1x the data; the fast profiles).
        The paper's scheme corrupts every image once per epoch (ignored).
    ae_epochs, ae_lr, clf_epochs, clf_lr, batch_size: fixed schedules (Adam).
    image_size: working resolution (multiple of 16); latent, dropout: AE size;
        width: AE stem width (32 in the paper; blocks use 2x, 4x, 8x it).
    ae_blur_kernel: motion-blur kernel of the AE corruptions (9; paper 10).
    eps: Charbonnier epsilon (1e-3).
    """

    name = "connective"
    summary = "Residual denoising AE + binary classifier on connective (x+A(x))/2 samples (paper 001)"
    localises = False
    profiles = {
        # the paper's schedule: AE Adam 1e-4, batch 128, 100 epochs over clean + 4 corrupted copies
        "paper": {"ae_epochs": 100, "ae_lr": 1e-4, "ae_copies": True, "clf_epochs": 20, "clf_lr": 1e-3},
        # CPU: 16x16 working size, AE width 16 (1/2 of the paper's), 1x data per AE epoch (one random
        # corruption per image), higher AE learning rate, 12 + 4 epochs; ~2 min per MNIST class with
        # 2000 training images on one busy core
        "cpu": {"ae_epochs": 12, "ae_lr": 1e-3, "ae_copies": False, "clf_epochs": 4, "clf_lr": 1e-3,
                "image_size": 16, "width": 16},
        # 8x8 sklearn digits (~120 images/class): 16x16 working size, narrow AE (width 8), small latent
        "demo": {"ae_epochs": 10, "ae_lr": 2e-3, "ae_copies": False, "clf_epochs": 6, "clf_lr": 1e-3,
                 "image_size": 16, "width": 8, "latent": 64, "batch_size": 32},
        "test": {"ae_epochs": 6, "ae_lr": 2e-3, "ae_copies": False, "clf_epochs": 4, "image_size": 16,
                 "width": 8, "latent": 16, "batch_size": 32},
    }

    def __init__(self, lam: float = 0.5, negative: str = "motion-blur", negative_on: str = "input",
                 blur_kernel: int = 5, noise_std: float = 0.2, mix: str = "connective", denoise: bool = True,
                 ae_corruption: str = "paper",
                 score_mode: str = "classifier", score_output: str = "probability", ae_copies: bool = True,
                 ae_epochs: int = 100, ae_lr: float = 1e-4, clf_epochs: int = 20, clf_lr: float = 1e-3,
                 batch_size: int = 128, image_size: int = 32, latent: int = 256, width: int = 32,
                 dropout: float = 0.3, ae_blur_kernel: int = 9, eps: float = 1e-3, seed: int = 0, device: str = "auto") -> None:
        super().__init__(seed=seed, device=device)
        self.lam = lam
        self.negative = negative
        self.negative_on = negative_on
        self.blur_kernel = blur_kernel
        self.noise_std = noise_std
        self.mix = mix
        self.denoise = denoise
        self.ae_corruption = ae_corruption
        self.score_mode = score_mode
        self.score_output = score_output
        self.ae_copies = ae_copies
        self.ae_epochs = ae_epochs
        self.ae_lr = ae_lr
        self.clf_epochs = clf_epochs
        self.clf_lr = clf_lr
        self.batch_size = batch_size
        self.image_size = image_size
        self.latent = latent
        self.width = width
        self.dropout = dropout
        self.ae_blur_kernel = ae_blur_kernel
        self.eps = eps

    # --- validation ----------------------------------------------------------------------------
    def _validate(self) -> None:
        def choice(name: str, options: tuple[str, ...]) -> None:
            if getattr(self, name) not in options:
                raise ValueError(f"connective: {name} must be one of {options}, got {getattr(self, name)!r}")

        choice("negative", _NEGATIVES)
        choice("negative_on", _NEGATIVE_ON)
        choice("mix", _MIX)
        choice("ae_corruption", _AE_CORRUPTIONS)
        choice("score_mode", _SCORE_MODES)
        choice("score_output", _SCORE_OUTPUTS)
        if not 0.0 < float(self.lam) < 1.0:
            raise ValueError(f"connective: lam must be in (0, 1), got {self.lam} (use mix='input' or "
                             "'reconstruction' for the unmixed ablations)")
        for k in ("blur_kernel", "ae_blur_kernel"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 3 or v % 2 == 0:
                raise ValueError(f"connective: {k} must be an odd integer >= 3 (kornia motion blur), got {v!r}")
        for k in ("ae_epochs", "clf_epochs"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"connective: {k} must be an integer >= 0, got {v!r}")
        for k in ("batch_size", "latent", "width"):
            v = getattr(self, k)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"connective: {k} must be a positive integer, got {v!r}")
        if not isinstance(self.image_size, int) or self.image_size < 16 or self.image_size % 16:
            raise ValueError(f"connective: image_size must be a multiple of 16 (>= 16), got {self.image_size!r}")
        for k in ("ae_lr", "clf_lr", "eps"):
            if not float(getattr(self, k)) > 0:
                raise ValueError(f"connective: {k} must be > 0, got {getattr(self, k)!r}")
        if not 0.0 <= float(self.noise_std) <= 1.0:
            raise ValueError(f"connective: noise_std must be in [0, 1], got {self.noise_std}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"connective: dropout must be in [0, 1), got {self.dropout}")
        if self.mix == "input" and self.score_mode == "reconstruction-error":
            raise ValueError("connective: mix='input' trains no autoencoder, so score_mode="
                             "'reconstruction-error' is impossible")

    def _check_input(self, x: torch.Tensor) -> None:
        self._validate()

    # --- helpers --------------------------------------------------------------------------------
    @property
    def _needs_ae(self) -> bool:
        return not (self.mix == "input" and self.score_mode == "classifier")

    @property
    def _needs_clf(self) -> bool:
        return self.score_mode == "classifier"

    def _build(self) -> None:
        c = self.input_shape_[0]
        dev = self.device_
        self.ae_ = (ResidualDenoisingAE(c, self.image_size, self.latent, self.dropout, stem=self.width,
                                        widths=(2 * self.width, 4 * self.width, 8 * self.width)).to(dev)
                    if self._needs_ae else None)
        self.clf_ = SmallClassifier(c, self.image_size).to(dev) if self._needs_clf else None

    def _to_size(self, x: torch.Tensor) -> torch.Tensor:
        return resize(x, self.image_size)

    def _corrupt_ae(self, x: torch.Tensor, kind: torch.Tensor) -> torch.Tensor:
        """Apply AE-training corruption ``kind`` (0 clean, 1 dropout 0.5@40 %, 2 motion blur,
        3 dropout 0.7@60 %, 4 Gaussian noise) to each image."""
        out = x.clone()
        ops = {1: lambda v: coarse_dropout(v, 0.5, 0.4),
               2: lambda v: motion_blur(v, self.ae_blur_kernel),
               3: lambda v: coarse_dropout(v, 0.7, 0.6),
               4: lambda v: gaussian_noise(v, 0.2, random_std=True)}
        for k, op in ops.items():
            sel = kind == k
            if bool(sel.any()):
                out[sel] = op(x[sel])
        return out

    @staticmethod
    def _corrupt_paper(x: torch.Tensor) -> torch.Tensor:
        """Eq. 1-2: ``x_g = x + eta`` (std ~ U(0, 0.2) per image, clipped), then coarse dropout
        ``x_c = x_g - beta * x_g`` (p 0.5 on a 40 %-resolution grid), on every image."""
        return coarse_dropout(gaussian_noise(x, 0.2, random_std=True), 0.5, 0.4)

    def _distort(self, v: torch.Tensor) -> torch.Tensor:
        """The negatives' distortion ``d``."""
        if self.negative == "motion-blur":
            return motion_blur(v, self.blur_kernel)
        if self.negative == "gaussian-noise":
            return gaussian_noise(v, self.noise_std, random_std=False)
        pick = torch.rand(v.shape[0], device=v.device) < 0.5
        out = gaussian_noise(v, self.noise_std, random_std=False)
        if bool(pick.any()):
            out[pick] = motion_blur(v[pick], self.blur_kernel)
        return out

    def _classifier_inputs(self, x: torch.Tensor, ax: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(positives, negatives) for a batch of normal images ``x`` with reconstructions ``ax``."""
        lam = float(self.lam)
        if self.mix == "input":
            return x, self._distort(x)
        assert ax is not None
        if self.mix == "reconstruction":
            return ax, self._distort(ax)
        base = x if self.negative_on == "input" else ax
        return lam * x + (1 - lam) * ax, lam * x + (1 - lam) * self._distort(base)

    def _test_input(self, x: torch.Tensor, ax: torch.Tensor | None) -> torch.Tensor:
        if self.mix == "input":
            return x
        assert ax is not None
        if self.mix == "reconstruction":
            return ax
        return float(self.lam) * x + (1 - float(self.lam)) * ax

    # --- training -------------------------------------------------------------------------------
    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        self._build()
        xs = self._to_size(x)
        vs = None if val is None else self._to_size(val)
        dev = self.device_
        self.history_: dict[str, Any] = {}
        if self.ae_ is not None:
            # start the sigmoid output at the mean training pixel instead of 0.5: avoids the early
            # rush into a saturated all-black output (the L1-like Charbonnier loss's median solution)
            m = float(xs.mean().clamp(0.02, 0.98))
            with torch.no_grad():
                self.ae_.out[0].bias.fill_(float(np.log(m / (1 - m))))
            self.history_["ae"] = self._fit_ae(xs, vs)
        if self.clf_ is not None:
            ax = None
            if self.ae_ is not None:
                self.ae_.eval()
                ax = map_batches(self.ae_, xs, batch_size=256, device=dev)
            self.history_["clf"] = self._fit_clf(xs, ax)

    def _fit_ae(self, xs: torch.Tensor, vs: torch.Tensor | None):
        ae = self.ae_
        assert ae is not None
        opt = torch.optim.Adam(ae.parameters(), lr=float(self.ae_lr))
        eps = float(self.eps)
        paper = self.ae_corruption == "paper"
        n_kinds = 5 if self.denoise and not paper else 1
        if self.ae_copies and self.denoise and not paper:
            data = (xs.repeat(n_kinds, 1, 1, 1), torch.arange(n_kinds).repeat_interleave(xs.shape[0]))
        else:
            data = (xs,)

        def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
            clean = batch[0]
            if len(batch) > 1:
                kind = batch[1]
            else:
                kind = torch.randint(0, n_kinds, (clean.shape[0],), device=clean.device)
            if not self.denoise:
                noisy = clean
            elif paper:
                noisy = self._corrupt_paper(clean)
            else:
                noisy = self._corrupt_ae(clean, kind)
            loss = charbonnier(ae(noisy), clean, eps).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return {"charbonnier": loss}

        def val_step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
            return {"charbonnier": charbonnier(ae(batch[0]), batch[0], eps).mean()}

        hist = train_loop(step, data, modules={"ae": ae}, epochs=self.ae_epochs, batch_size=self.batch_size,
                          device=self.device_, seed=self.seed, val_data=vs, val_step=val_step,
                          desc="connective-ae")
        ae.eval()
        return hist.epochs

    def _fit_clf(self, xs: torch.Tensor, ax: torch.Tensor | None):
        clf = self.clf_
        assert clf is not None
        opt = torch.optim.Adam(clf.parameters(), lr=float(self.clf_lr))
        data = (xs,) if ax is None else (xs, ax)

        def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
            xb = batch[0]
            ab = batch[1] if len(batch) > 1 else None
            pos, neg = self._classifier_inputs(xb, ab)
            inputs = torch.cat([pos, neg])
            target = torch.cat([torch.zeros(pos.shape[0]), torch.ones(neg.shape[0])]).long().to(xb.device)
            logits = clf(inputs)
            loss = F.cross_entropy(logits, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            acc = (logits.argmax(1) == target).float().mean()
            return {"ce": loss, "acc": acc}

        hist = train_loop(step, data, modules={"clf": clf}, epochs=self.clf_epochs, batch_size=self.batch_size,
                          device=self.device_, seed=self.seed + 1, desc="connective-clf")
        clf.eval()
        return hist.epochs

    # --- scoring --------------------------------------------------------------------------------
    def _score_batch(self, b: torch.Tensor) -> torch.Tensor:
        ax = self.ae_(b) if self.ae_ is not None else None
        if self.score_mode == "reconstruction-error":
            assert ax is not None
            return charbonnier(ax, b, float(self.eps)).flatten(1).mean(1).double()
        assert self.clf_ is not None
        logits = self.clf_(self._test_input(b, ax)).double()
        diff = logits[:, 1] - logits[:, 0]
        return torch.sigmoid(diff) if self.score_output == "probability" else diff

    def _score(self, x: torch.Tensor) -> np.ndarray:
        for m in (self.ae_, self.clf_):
            if m is not None:
                m.eval()
        out = map_batches(self._score_batch, self._to_size(x), batch_size=256, device=self.device_)
        return out.numpy()

    def reconstruct(self, images) -> np.ndarray:
        """AE reconstructions ``(N, C, s, s)`` at the working size (for figures like the paper's Fig. 4)."""
        x = self._prepare(images)
        if self.ae_ is None:
            raise ValueError("connective: this variant (mix='input') has no autoencoder")
        self.ae_.eval()
        with torch.no_grad():
            return map_batches(self.ae_, self._to_size(x), batch_size=256, device=self.device_).numpy()

    # --- persistence ----------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        state: dict[str, Any] = {}
        if self.ae_ is not None:
            state.update(module_state("ae", self.ae_))
        if self.clf_ is not None:
            state.update(module_state("clf", self.clf_))
        return state

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self._validate()
        self._build()
        for prefix, m in (("ae", self.ae_), ("clf", self.clf_)):
            if m is not None:
                load_module_state(prefix, m, state)
                m.eval()
