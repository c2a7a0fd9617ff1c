"""Paper 003 (Sarafijanovic-Djukic & Davis, "Fast distance-based anomaly detection
in images using an Inception-like autoencoder") and its CAE baselines.

Registered detectors
* ``inception-cae``: Inception-CAE (``nets/inception_cae.py``) trained with MSE on
  normal images; representation = GAP of the 4x4x128 bottleneck (128-d). Score
  ``scoring="nn-qed"`` (default): squared L2 distance to the nearest training
  representation under product quantization (FAISS, ``pq_m`` = 32 sub-quantizers
  x ``pq_bits`` = 4 bits, fast-scan "PQ32x4fs" when ``pq_bits == 4``);
  ``"nn-eed"``: the exact distance (IndexFlatL2); ``"re"``: reconstruction MSE.
  ``index`` overrides the FAISS factory string entirely.
* ``cae-nn``: the same with Deep SVDD's LeNet-type CAE (``nets/lenet_cae.py``);
  representation = its 128-d dense code ("CAE NN-QED").
* ``cae-ocsvm``: the LeNet CAE code fed to a one-class SVM (RBF kernel,
  gamma = 1 / n_features, nu = 0.5, as the paper states); score = minus the
  decision function (evaluated in NumPy from the stored support vectors, so a
  saved model needs no pickle).
* ``deep-svdd`` (``deep_svdd.py``) and ``dsebm`` (``dsebm.py``): the other deep
  baselines.

Inputs of any size >= 8x8 with 1 or 3 channels are zero-padded (centred) to
a multiple of 8 (MNIST 28x28 -> 32x32 as in the paper). Training (all CAEs):
MSE, Adam with weight decay, a two-phase learning rate (``lr`` for ``epochs``,
then ``fine_tune_lr`` for ``fine_tune_epochs``), shuffled mini-batches, no
checkpoint selection. Profiles:
* ``paper``: Adam 1e-4 for 100 epochs then 1e-5 for 50, batch 200, weight decay
  1e-6 (MNIST / Fashion-MNIST schedule); ``paper-cifar``: 250 + 100 epochs.
* ``cpu``: fixed in advance (no test data involved): Adam 1e-3 for 8 epochs then
  1e-4 for 2, batch 50 - a tenfold first-phase learning rate and smaller batches
  buy convergence in ~15x fewer epochs. About 2-3 minutes per class for 1500
  MNIST training images on one core (benchmarks cap the training set with
  ``--max-train``; the paper uses all ~6000).
* ``demo`` (8x8 digits) and ``test`` (contract tests): a few epochs.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..detector import Detector, register
from ..images import ImageError, pad_to_multiple
from ..knn import KNNIndex
from ..nets.inception_cae import GAP_EXPANSIONS, InceptionCAE
from ..nets.lenet_cae import LeNetCAE
from ..train import History, map_batches, train_loop

SCORES = ("nn-qed", "nn-eed", "re")
MULTIPLE = 8

CAE_PROFILES: dict[str, dict[str, Any]] = {
    "paper": {"epochs": 100, "fine_tune_epochs": 50, "lr": 1e-4, "fine_tune_lr": 1e-5, "batch_size": 200,
              "weight_decay": 1e-6},
    "paper-cifar": {"epochs": 250, "fine_tune_epochs": 100, "lr": 1e-4, "fine_tune_lr": 1e-5,
                    "batch_size": 200, "weight_decay": 1e-6},
    "cpu": {"epochs": 8, "fine_tune_epochs": 2, "lr": 1e-3, "fine_tune_lr": 1e-4, "batch_size": 50,
            "weight_decay": 1e-6},
    "demo": {"epochs": 4, "fine_tune_epochs": 1, "lr": 3e-3, "fine_tune_lr": 3e-4, "batch_size": 40,
             "weight_decay": 1e-6},
    "test": {"epochs": 2, "fine_tune_epochs": 1, "lr": 1e-3, "fine_tune_lr": 1e-4, "batch_size": 50,
             "weight_decay": 1e-6},
}


def prepare(x: torch.Tensor) -> torch.Tensor:
    """Zero-pad H and W (centred) to a multiple of 8, what every network here needs."""
    return pad_to_multiple(x, MULTIPLE)


def check_schedule(det: Any) -> None:
    """Validate the shared two-phase schedule hyperparameters (before any training)."""
    for name in ("epochs", "fine_tune_epochs"):
        v = getattr(det, name)
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{det.name}: {name} must be an integer >= 0, got {v!r}")
    if det.epochs + det.fine_tune_epochs < 1:
        raise ValueError(f"{det.name}: epochs + fine_tune_epochs must be >= 1")
    for name in ("lr", "fine_tune_lr"):
        if not float(getattr(det, name)) > 0:
            raise ValueError(f"{det.name}: {name} must be > 0, got {getattr(det, name)!r}")
    if not isinstance(det.batch_size, (int, np.integer)) or det.batch_size < 1:
        raise ValueError(f"{det.name}: batch_size must be a positive integer, got {det.batch_size!r}")
    if float(det.weight_decay) < 0:
        raise ValueError(f"{det.name}: weight_decay must be >= 0, got {det.weight_decay!r}")


def two_phase_fit(loss_fn: Any, data: torch.Tensor, val: torch.Tensor | None, *, modules: dict[str, nn.Module],
                  params: list[torch.nn.Parameter], epochs: int, fine_tune_epochs: int, lr: float,
                  fine_tune_lr: float, batch_size: int, weight_decay: float, device: torch.device, seed: int,
                  desc: str) -> History:
    """Adam (``lr`` for ``epochs``, then ``fine_tune_lr`` for ``fine_tune_epochs``) on
    ``loss_fn(batch) -> scalar`` through the shared :func:`train_loop`; ``val`` (optional)
    gives a per-epoch validation loss in the history."""
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if epochs == 0:
        for g in opt.param_groups:
            g["lr"] = fine_tune_lr

    def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        loss = loss_fn(batch[0])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss}

    def val_step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        return {"loss": loss_fn(batch[0])}

    def on_epoch_end(epoch: int, logs: dict[str, float]) -> None:
        if epoch + 1 == epochs:
            for g in opt.param_groups:
                g["lr"] = fine_tune_lr

    return train_loop(step, data, modules=modules, epochs=epochs + fine_tune_epochs, batch_size=batch_size,
                      device=device, seed=seed, val_data=val, val_step=val_step if val is not None else None,
                      on_epoch_end=on_epoch_end, desc=desc)


class CAEDetector(Detector):
    """Shared part of the CAE-based detectors: network construction, MSE training
    with the two-phase schedule, representation extraction and reconstruction error.
    Subclasses set ``arch`` ("inception" or "lenet") and implement the scoring head."""

    arch = "inception"
    profiles = CAE_PROFILES

    def __init__(self, epochs: int = 8, fine_tune_epochs: int = 2, lr: float = 1e-3, fine_tune_lr: float = 1e-4,
                 batch_size: int = 50, weight_decay: float = 1e-6, seed: int = 0, device: str = "auto") -> None:
        super().__init__(seed=seed, device=device)
        self.epochs = epochs
        self.fine_tune_epochs = fine_tune_epochs
        self.lr = lr
        self.fine_tune_lr = fine_tune_lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay

    # --- network -----------------------------------------------------------
    def _build(self) -> nn.Module:
        c, h, w = self.input_shape_
        H, W = -(-h // MULTIPLE) * MULTIPLE, -(-w // MULTIPLE) * MULTIPLE
        net = InceptionCAE(c) if self.arch == "inception" else LeNetCAE(c, H, W)
        return net.to(self.device_)

    def _check_input(self, x: torch.Tensor) -> None:
        check_schedule(self)
        self._check_head()
        if x.shape[1] not in (1, 3):
            raise ImageError(f"{self.name}: images need 1 or 3 channels, got {x.shape[1]}")
        if min(x.shape[-2:]) < 8:
            raise ImageError(f"{self.name}: images must be at least 8x8, got {tuple(x.shape[-2:])}")

    def _check_head(self) -> None:
        """Validate the scoring hyperparameters (subclasses)."""

    def _transform(self, x: torch.Tensor) -> torch.Tensor:
        """Network input: zero-padded to a multiple of 8 (subclasses may add preprocessing)."""
        return prepare(x)

    def _train_cae(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        self.net_ = self._build()
        net = self.net_
        self.history_ = two_phase_fit(
            lambda b: F.mse_loss(net(b), b), self._transform(x), None if val is None else self._transform(val),
            modules={"net": net}, params=list(net.parameters()), epochs=self.epochs,
            fine_tune_epochs=self.fine_tune_epochs, lr=self.lr, fine_tune_lr=self.fine_tune_lr,
            batch_size=self.batch_size, weight_decay=self.weight_decay, device=self.device_, seed=self.seed,
            desc=self.name)
        net.eval()

    # --- inference -----------------------------------------------------------
    def embed(self, images: Any) -> np.ndarray:
        """The 128-d representation of each image (GAP of the bottleneck for the
        Inception-CAE, the dense code for the LeNet CAE), float32 (N, 128)."""
        x = self._prepare(images)
        return self._embed(x)

    @torch.no_grad()
    def _embed(self, x: torch.Tensor) -> np.ndarray:
        self.net_.eval()
        return map_batches(self.net_.embed, self._transform(x), batch_size=256, device=self.device_).numpy()

    @torch.no_grad()
    def _reconstruction_error(self, x: torch.Tensor) -> np.ndarray:
        self.net_.eval()
        return map_batches(lambda b: (self.net_(b) - b).pow(2).flatten(1).mean(1), self._transform(x),
                           batch_size=256, device=self.device_).numpy()



class CAENearestNeighbour(CAEDetector):
    """CAE representation + nearest-neighbour distance (NN-QED / NN-EED) or RE."""

    def __init__(self, scoring: str = "nn-qed", pq_m: int = 32, pq_bits: int = 4, fast_scan: bool = True,
                 index: str | None = None, epochs: int = 8, fine_tune_epochs: int = 2, lr: float = 1e-3,
                 fine_tune_lr: float = 1e-4, batch_size: int = 50, weight_decay: float = 1e-6, seed: int = 0,
                 device: str = "auto") -> None:
        super().__init__(epochs=epochs, fine_tune_epochs=fine_tune_epochs, lr=lr, fine_tune_lr=fine_tune_lr,
                         batch_size=batch_size, weight_decay=weight_decay, seed=seed, device=device)
        self.scoring = scoring
        self.pq_m = pq_m
        self.pq_bits = pq_bits
        self.fast_scan = fast_scan
        self.index = index

    @property
    def factory(self) -> str | None:
        """FAISS factory string of the neighbour index (None for ``scoring="re"``)."""
        if self.scoring == "re":
            return None
        if self.index:
            return self.index
        if self.scoring == "nn-eed":
            return "Flat"
        fs = "fs" if self.fast_scan and int(self.pq_bits) == 4 else ""
        return f"PQ{int(self.pq_m)}x{int(self.pq_bits)}{fs}"

    def _check_head(self) -> None:
        if self.scoring not in SCORES:
            raise ValueError(f"{self.name}: scoring must be one of {SCORES}, got {self.scoring!r}")
        for name, lo, hi in (("pq_m", 1, 128 * 8), ("pq_bits", 1, 16)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not lo <= v <= hi:
                raise ValueError(f"{self.name}: {name} must be an integer in [{lo}, {hi}], got {v!r}")
        if self.index is not None and not isinstance(self.index, str):
            raise ValueError(f"{self.name}: index must be a FAISS factory string or None, got {self.index!r}")

    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        self._train_cae(x, val)
        self.index_: KNNIndex | None = None
        if self.scoring != "re":
            self.index_ = self._build_index(self._embed(x))

    def _build_index(self, feats: np.ndarray) -> KNNIndex:
        return KNNIndex(self.factory or "Flat", gpu="auto", seed=self.seed).fit(feats)

    def rescored(self, train_features: np.ndarray, scoring: str, **index_params: Any) -> "CAENearestNeighbour":
        """A copy sharing this trained network but scoring with ``scoring`` (and e.g.
        ``pq_m``/``pq_bits``/``index``), its index rebuilt from ``train_features``
        (``embed(training images)``). For studies that train once and score many ways."""
        self._check_fitted()
        other = copy.copy(self)
        other.scoring = scoring
        for k, v in index_params.items():
            if k not in ("pq_m", "pq_bits", "fast_scan", "index"):
                raise TypeError(f"rescored: unknown index parameter {k!r}")
            setattr(other, k, v)
        other._check_head()
        other.index_ = None if scoring == "re" else other._build_index(train_features)
        other.threshold_ = None
        return other

    def _score(self, x: torch.Tensor) -> np.ndarray:
        if self.scoring == "re":
            return self._reconstruction_error(x)
        assert self.index_ is not None
        return self.index_.score(self._embed(x), k=1, agg="kth")

    def _state(self) -> dict[str, Any]:
        state = self._net_state()
        if self.index_ is not None:
            state.update(self.index_.state("knn")[0])
        return state

    def _meta(self) -> dict[str, Any]:
        return {"knn": self.index_.state("knn")[1] if self.index_ is not None else None}

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self._restore_net({k: v for k, v in state.items() if k.startswith("net.")})
        knn = meta.get("knn")
        self.index_ = KNNIndex.from_state(state, knn, "knn") if knn else None


GAP_MODES = ("auto", "on", "off")


@register
class InceptionCAENN(CAENearestNeighbour):
    """Paper 003's method: Inception-CAE, GAP representation, NN-QED (PQ32x4) score.

    ``gap_in_training``: ``"on"`` trains through the GAP layer (the decoder sees only
    the 128-d code, re-expanded by ``gap_expand``), ``"off"`` trains on the full
    bottleneck map and applies GAP only at prediction, ``"auto"`` (default) follows
    Sec. 4.3 of the paper: on for grey images (MNIST, Fashion-MNIST), off for colour
    (CIFAR-10/100)."""

    name = "inception-cae"
    summary = "Inception-like CAE + GAP representation, product-quantized nearest-neighbour distance (003)"
    arch = "inception"

    def __init__(self, scoring: str = "nn-qed", gap_in_training: str = "auto", gap_expand: str = "dense",
                 pq_m: int = 32, pq_bits: int = 4, fast_scan: bool = True, index: str | None = None,
                 epochs: int = 8, fine_tune_epochs: int = 2, lr: float = 1e-3, fine_tune_lr: float = 1e-4,
                 batch_size: int = 50, weight_decay: float = 1e-6, seed: int = 0, device: str = "auto") -> None:
        super().__init__(scoring=scoring, pq_m=pq_m, pq_bits=pq_bits, fast_scan=fast_scan, index=index,
                         epochs=epochs, fine_tune_epochs=fine_tune_epochs, lr=lr, fine_tune_lr=fine_tune_lr,
                         batch_size=batch_size, weight_decay=weight_decay, seed=seed, device=device)
        self.gap_in_training = gap_in_training
        self.gap_expand = gap_expand

    def _check_head(self) -> None:
        super()._check_head()
        if self.gap_in_training not in GAP_MODES:
            raise ValueError(f"{self.name}: gap_in_training must be one of {GAP_MODES}, got "
                             f"{self.gap_in_training!r}")
        if self.gap_expand not in GAP_EXPANSIONS:
            raise ValueError(f"{self.name}: gap_expand must be one of {GAP_EXPANSIONS}, got {self.gap_expand!r}")

    def uses_gap_in_training(self, channels: int) -> bool:
        """Whether the network trains through GAP for images with ``channels`` channels."""
        return self.gap_in_training == "on" or (self.gap_in_training == "auto" and channels == 1)

    def _build(self) -> nn.Module:
        c, h, w = self.input_shape_
        code_hw = (-(-h // MULTIPLE), -(-w // MULTIPLE))
        return InceptionCAE(c, gap_in_training=self.uses_gap_in_training(c), gap_expand=self.gap_expand,
                            code_hw=code_hw).to(self.device_)


@register
class LeNetCAENN(CAENearestNeighbour):
    """Baseline CAE NN-QED of paper 003: Deep SVDD's LeNet CAE, dense 128-d code."""

    name = "cae-nn"
    summary = "Deep SVDD's LeNet-type CAE code + (product-quantized) nearest-neighbour distance (003 baseline)"
    arch = "lenet"


@register
class CAEOneClassSVM(CAEDetector):
    """Baseline CAE OCSVM of paper 003: LeNet CAE code -> OneClassSVM (RBF,
    gamma = 1/n_features, nu = 0.5). Score = -decision_function."""

    name = "cae-ocsvm"
    summary = "Deep SVDD's LeNet-type CAE code + one-class SVM (RBF, nu=0.5, gamma=1/d) (003 baseline)"
    arch = "lenet"

    def __init__(self, nu: float = 0.5, gamma: float | str = "1/n_features", epochs: int = 8,
                 fine_tune_epochs: int = 2, lr: float = 1e-3, fine_tune_lr: float = 1e-4, batch_size: int = 50,
                 weight_decay: float = 1e-6, seed: int = 0, device: str = "auto") -> None:
        super().__init__(epochs=epochs, fine_tune_epochs=fine_tune_epochs, lr=lr, fine_tune_lr=fine_tune_lr,
                         batch_size=batch_size, weight_decay=weight_decay, seed=seed, device=device)
        self.nu = nu
        self.gamma = gamma

    def _check_head(self) -> None:
        if not 0.0 < float(self.nu) <= 1.0:
            raise ValueError(f"cae-ocsvm: nu must be in (0, 1], got {self.nu!r}")
        if self.gamma != "1/n_features" and not (isinstance(self.gamma, (int, float)) and self.gamma > 0):
            raise ValueError(f"cae-ocsvm: gamma must be '1/n_features' or a positive number, got {self.gamma!r}")

    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        self._train_cae(x, val)
        self.fit_svm(self._embed(x))

    def fit_svm(self, train_features: np.ndarray) -> None:
        """Fit the one-class SVM head on training representations (``embed`` output)."""
        from sklearn.svm import OneClassSVM

        feats = np.asarray(train_features, dtype=np.float64)
        gamma = 1.0 / feats.shape[1] if self.gamma == "1/n_features" else float(self.gamma)
        svm = OneClassSVM(kernel="rbf", gamma=gamma, nu=float(self.nu)).fit(feats)
        self.gamma_ = gamma
        self.support_vectors_ = np.asarray(svm.support_vectors_, dtype=np.float64)
        self.dual_coef_ = np.asarray(svm.dual_coef_, dtype=np.float64).reshape(-1)
        self.intercept_ = float(np.asarray(svm.intercept_).reshape(-1)[0])

    def _decision(self, feats: np.ndarray) -> np.ndarray:
        f = feats.astype(np.float64)
        sv = self.support_vectors_
        d2 = (f ** 2).sum(1)[:, None] + (sv ** 2).sum(1)[None, :] - 2.0 * f @ sv.T
        return np.exp(-self.gamma_ * np.maximum(d2, 0.0)) @ self.dual_coef_ + self.intercept_

    def _score(self, x: torch.Tensor) -> np.ndarray:
        return -self._decision(self._embed(x))

    def _state(self) -> dict[str, Any]:
        return {**self._net_state(), "svm.support_vectors": self.support_vectors_,
                "svm.dual_coef": self.dual_coef_}

    def _meta(self) -> dict[str, Any]:
        return {"gamma": self.gamma_, "intercept": self.intercept_}

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self._restore_net({k: v for k, v in state.items() if k.startswith("net.")})
        self.support_vectors_ = state["svm.support_vectors"].numpy().astype(np.float64)
        self.dual_coef_ = state["svm.dual_coef"].numpy().astype(np.float64)
        self.gamma_ = float(meta["gamma"])
        self.intercept_ = float(meta["intercept"])


from . import deep_svdd, dsebm  # noqa: E402,F401  (register the other two baselines)
