"""UNODE (paper 004, Mirzaei et al., CVPR 2024): contrastive learning with AutoAugOOD
negatives and a binary head.

Training (per batch of normal images x):
  * negatives ``x_bar = Gamma(x)``: a composition of hard augmentations drawn by the
    AutoAugOOD weights (:mod:`.autoaugood`);
  * two SimCLR views of every normal image and of every negative (random resized crop
    0.08-1, flip, colour jitter (0.4, 0.4, 0.4, 0.1) p 0.8, grayscale p 0.2; kornia);
  * NT-Xent (temperature 0.5): anchors are the normal views, the positive is the other
    view of the same image, the denominator holds the negatives' views only (Eq. 9-11,
    the default); ``contrast_inliers=True`` also puts SimCLR's other normal views there,
    which pushes normal images apart (kept as an option; it weakens the similarity score);
  * ``+ lam * cross-entropy`` of a binary head (normal views label 1, negatives 0);
  * network: backbone f -> projection head Linear(d, d)-ReLU-Linear(d, 128) and binary
    head Linear(d, 2).
Score (higher = more novel): ``-(O_sim / mean_train(O_sim) + score_lambda * P(normal) /
mean_train(P(normal)))``, where ``O_sim`` is the largest cosine similarity between the
test projection and the training projections (shared FAISS index, ``metric="cosine"``;
the training mean excludes each point's own match). ``test_views > 1`` averages both
terms over fixed, deterministic views (identity, h-flip, four corner crops of 7/8 size,
...) so that the score never depends on the rest of the batch.

Inputs: any size >= 8x8, 1 or 3 channels. Grey images are repeated to RGB and every image
is resized (bilinear) to ``image_size`` (default 32) before augmentation; pretrained
backbones then resize to their own ``backbone_input_size`` inside.

Backbones: ``resnet18-cifar`` (from scratch, width ``width``), ``resnet18``,
``resnet50``, ``wide_resnet50_2`` (torchvision naming; ``backbone_weights`` = a local
weights file, or None for random initialisation) and ``mobilenet_v2``
(``backbone_weights`` required: the shared ImageNet weights; TF padding, [-1, 1] input
scaling). Pretrained backbones train only their last ``trainable_blocks`` stages.

AutoAugOOD feature extractor: MobileNetV2 from ``extractor_weights`` (the authors used a
CLIP ResNet-50, which is not available here). With ``extractor_weights=None`` and
``aug_weights="auto"`` the weights fall back to uniform over the augmentation set (a
warning says so and ``weights_source_`` records it). Explicit weights:
``aug_weights="rotation:0.7,mixup:0.3"`` (e.g. the authors' published MNIST weights);
``aug_weights="none"`` trains without negatives (contrastive only, Table 4 "None").

Mixup needs auxiliary images: ``aux_dataset`` (a name for
:func:`noveltylab.data.load_dataset`, with ``aux_data_dir``) or
:meth:`UNODE.set_auxiliary`; without them mixup is left out of the set.
:data:`AUXILIARY_FOR` names the auxiliary set used here for each normal data set (another
locally available data set, never the normal one; see README_unode.md for the argument).
Labeled multi-class: :meth:`UNODE.fit` accepts ``labels=`` (class of each training
image); same-class normal views then also count as positives (supervised contrastive).

Optimiser: SGD (momentum 0.9, weight decay ``weight_decay``), linear warm-up for
``warmup_epochs`` then cosine decay, per epoch (the paper: LARS, lr 0.1, 1000 epochs).
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..augment import HARD_AUGMENTATIONS, PositiveViews
from ..detector import Detector, load_module_state, module_state, register
from ..images import ImageInput, as_images, match_channels, resize
from ..knn import KNNIndex
from ..train import map_batches, train_loop
from ..nets.freeze import freeze
from .guards import features_collapsed
from .autoaugood import DIVERGENCES, NegativeSampler, autoaugood_weights, parse_weights

BACKBONES = ("resnet18-cifar", "resnet18", "resnet50", "wide_resnet50_2", "mobilenet_v2")
_DEFAULT_AUGS = "rotation,cut_permutation,cutout,cutpaste,cutpaste_scar,elastic_flip,mixup"


class _Backbone(nn.Module):
    """Wraps a network into ``features(x01) -> (N, d)`` with its own input normalisation."""

    def __init__(self, kind: str, width: int, input_size: int) -> None:
        super().__init__()
        from ..nets.resnet import ARCHS, cifar_resnet18

        self.kind = kind
        self.input_size = input_size
        if kind == "resnet18-cifar":
            self.net: nn.Module = cifar_resnet18(width=width)
            self.net.fc = nn.Identity()
            self.dim = self.net.feature_dim
        elif kind in ARCHS:
            self.net = ARCHS[kind](num_classes=1000)
            self.net.fc = nn.Identity()
            self.dim = self.net.feature_dim
        elif kind == "mobilenet_v2":
            from ..nets.mobilenet import MobileNetV2

            self.net = MobileNetV2(num_classes=1001, tf_padding=True, input_size=input_size)
            self.net.classifier = nn.Identity()
            self.dim = 1280
        else:
            raise ValueError(f"unknown backbone {kind!r}; choose from {', '.join(BACKBONES)}")
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def load_pretrained(self, path: str) -> None:
        from ..nets.mobilenet import load_mobilenet_v2
        from ..nets.resnet import load_resnet

        if self.kind == "mobilenet_v2":
            m = load_mobilenet_v2(path, tf_padding=True, input_size=self.input_size)
            m.classifier = nn.Identity()
        else:
            m = load_resnet(self.kind, path)
            m.fc = nn.Identity()
        self.net.load_state_dict(m.state_dict())

    def stages(self) -> list[nn.Module]:
        if self.kind == "mobilenet_v2":
            return list(self.net.features)
        n = self.net
        return [nn.ModuleList([n.conv1, n.bn1]), n.layer1, n.layer2, n.layer3, n.layer4]

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        if self.kind == "resnet18-cifar":
            return self.net.forward_features(x01 * 2 - 1)
        if self.kind == "mobilenet_v2":
            return self.net.embed(x01)
        x = F.interpolate(x01, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return self.net.forward_features((x - self.mean) / self.std)


class _Heads(nn.Module):
    def __init__(self, d: int, proj_dim: int) -> None:
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, proj_dim))
        self.cls = nn.Linear(d, 2)


def nt_xent_with_negatives(z_pos: torch.Tensor, z_neg: torch.Tensor | None, temperature: float = 0.5,
                           contrast_inliers: bool = False, labels: torch.Tensor | None = None) -> torch.Tensor:
    """NT-Xent over normal views ``z_pos`` (2B, k: first B = view 1, last B = view 2) with the
    negatives' views ``z_neg`` (2B', k) added to every denominator. ``contrast_inliers=False``
    (default) keeps only the negatives (and the positives) in the denominator (the paper's
    Eq. 9-10); ``True`` adds the other normal views as in plain SimCLR.
    ``labels`` (B,) makes same-class normal views extra positives (supervised contrastive)."""
    n2 = z_pos.shape[0]
    B = n2 // 2
    z_pos = F.normalize(z_pos, dim=1)
    sim_pp = z_pos @ z_pos.t() / temperature
    idx = torch.arange(n2, device=z_pos.device)
    pair = (idx + B) % n2
    pos_mask = torch.zeros(n2, n2, dtype=torch.bool, device=z_pos.device)
    pos_mask[idx, pair] = True
    if labels is not None:
        lab = torch.cat([labels, labels])
        pos_mask |= lab[:, None] == lab[None, :]
    self_mask = torch.eye(n2, dtype=torch.bool, device=z_pos.device)
    pos_mask &= ~self_mask
    keep = ~self_mask if contrast_inliers else pos_mask
    logits = sim_pp.masked_fill(~keep, float("-inf"))
    if z_neg is not None and z_neg.shape[0] > 0:
        z_neg = F.normalize(z_neg, dim=1)
        sim_pn = z_pos @ z_neg.t() / temperature
        if not contrast_inliers:
            # Eq. 10: the negatives of x_i are the views of Gamma(x_j), j != i
            Bn = z_neg.shape[0] // 2
            jn = torch.arange(z_neg.shape[0], device=z_pos.device) % Bn
            own = (idx % B)[:, None] == jn[None, :]
            sim_pn = sim_pn.masked_fill(own, float("-inf"))
        logits = torch.cat([logits, sim_pn], 1)
    log_den = torch.logsumexp(logits, 1)
    pos_logits = sim_pp.masked_fill(~pos_mask, float("-inf"))
    # -1/|P| log (sum_P exp / sum_all exp) (Eq. 9)
    n_pos = pos_mask.sum(1).clamp(min=1)
    loss = -(torch.logsumexp(pos_logits, 1) - log_den) / n_pos
    return loss.mean()


# the auxiliary (mixup) set used for each normal data set: the paper does not name one; ours is the
# other locally available data set nearest in format (same size/channels where possible), never the
# normal data set itself, and only *training* images (see README_unode.md, "Auxiliary images")
AUXILIARY_FOR = {"mnist": "fashion-mnist", "fashion-mnist": "mnist", "cifar10-jpeg": "fashion-mnist",
                 "cifar10": "fashion-mnist", "digits": "mnist"}


@register
class UNODE(Detector):
    """UNODE: contrastive learning with AutoAugOOD negatives and a binary head (paper 004)."""

    name = "unode"
    summary = "Contrastive learning with AutoAugOOD-weighted hard-augmentation negatives + binary head (paper 004)"
    localises = False
    profiles = {
        # CPU schedule: CIFAR-ResNet-18 at width 8 (d = 64), 10 epochs of batch 32 (bench with
        # --max-train 500 on MNIST-size data), AutoAugOOD on 100 images with 112-px MobileNetV2
        # features: ~1-2 CPU-minutes per class.
        "cpu": {"width": 8, "epochs": 10, "batch_size": 32, "lr": 0.1, "warmup_epochs": 1,
                "autoaug_samples": 100, "extractor_size": 112},
        # paper: 1000 epochs, lr 0.1 with warm-up, CIFAR-ResNet-18 (width 64) from scratch
        "paper": {"width": 64, "epochs": 1000, "batch_size": 256, "lr": 0.1, "warmup_epochs": 10,
                  "autoaug_samples": 500},
        "demo": {"width": 8, "image_size": 16, "epochs": 6, "batch_size": 64, "warmup_epochs": 1,
                 "autoaug_samples": 60},
        "test": {"width": 4, "image_size": 16, "epochs": 1, "batch_size": 50, "warmup_epochs": 0,
                 "autoaug_samples": 30},
    }

    def __init__(self, backbone: str = "resnet18-cifar", width: int = 64, backbone_weights: str | None = None,
                 backbone_input_size: int = 224, trainable_blocks: int = 0, image_size: int = 32,
                 proj_dim: int = 128, epochs: int = 15, batch_size: int = 64, lr: float = 0.1,
                 weight_decay: float = 1e-6, warmup_epochs: int = 2, temperature: float = 0.5, lam: float = 1.0,
                 loss_terms: str = "both", contrast_inliers: bool = False,
                 augmentations: str = _DEFAULT_AUGS, aug_weights: str = "auto", max_compose: int | None = None,
                 extractor_weights: str | None = None, extractor_size: int = 224, autoaug_samples: int = 200,
                 tsne_dim: int = 1, divergence: str = "sym-kl", autoaug_temperature: float = 1.0,
                 aux_dataset: str | None = None, aux_data_dir: str | None = None, aux_max: int = 2000,
                 score_terms: str = "both", score_lambda: float = 1.0, test_views: int = 1,
                 seed: int = 0, device: str = "auto") -> None:
        super().__init__(seed=seed, device=device)
        self.backbone = backbone
        self.width = width
        self.backbone_weights = backbone_weights
        self.backbone_input_size = backbone_input_size
        self.trainable_blocks = trainable_blocks
        self.image_size = image_size
        self.proj_dim = proj_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_epochs = warmup_epochs
        self.temperature = temperature
        self.lam = lam
        self.loss_terms = loss_terms
        self.contrast_inliers = contrast_inliers
        self.augmentations = augmentations
        self.aug_weights = aug_weights
        self.max_compose = max_compose
        self.extractor_weights = extractor_weights
        self.extractor_size = extractor_size
        self.autoaug_samples = autoaug_samples
        self.tsne_dim = tsne_dim
        self.divergence = divergence
        self.autoaug_temperature = autoaug_temperature
        self.aux_dataset = aux_dataset
        self.aux_data_dir = aux_data_dir
        self.aux_max = aux_max
        self.score_terms = score_terms
        self.score_lambda = score_lambda
        self.test_views = test_views
        self._aux: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None

    # ------------------------------------------------------------------ checks
    def _validate(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose from {', '.join(BACKBONES)}")
        if self.backbone == "mobilenet_v2" and not self.backbone_weights:
            raise ValueError("backbone='mobilenet_v2' needs backbone_weights (a torchvision-named weights file)")
        for nm, v, lo in (("width", self.width, 1), ("epochs", self.epochs, 0), ("batch_size", self.batch_size, 2),
                          ("image_size", self.image_size, 8), ("proj_dim", self.proj_dim, 1),
                          ("autoaug_samples", self.autoaug_samples, 5), ("test_views", self.test_views, 1)):
            if int(v) < lo:
                raise ValueError(f"{nm} must be >= {lo}, got {v}")
        if self.temperature <= 0 or self.lr <= 0:
            raise ValueError("temperature and lr must be > 0")
        if self.loss_terms not in ("both", "con", "ce"):
            raise ValueError(f"loss_terms must be 'both', 'con' or 'ce', got {self.loss_terms!r}")
        if self.score_terms not in ("both", "sim", "bin"):
            raise ValueError(f"score_terms must be 'both', 'sim' or 'bin', got {self.score_terms!r}")
        if self.divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be one of {DIVERGENCES}, got {self.divergence!r}")
        if self.tsne_dim not in (1, 2):
            raise ValueError(f"tsne_dim must be 1 or 2, got {self.tsne_dim}")
        if self.test_views > len(_TEST_VIEWS):
            raise ValueError(f"test_views must be <= {len(_TEST_VIEWS)}, got {self.test_views}")
        names = self._aug_names(check_only=True)
        if self.aug_weights == "none":
            if self.loss_terms == "ce" or self.score_terms == "bin":
                raise ValueError("aug_weights='none' (no negatives) cannot train or score the binary head; "
                                 "use loss_terms='con' and score_terms='sim'")
        elif self.aug_weights not in ("auto", "uniform"):
            parse_weights(self.aug_weights, names + (["mixup"] if "mixup" in self._requested() else []))
        if self.loss_terms == "ce" and self.score_terms == "sim":
            raise ValueError("loss_terms='ce' trains no projection head; score_terms='sim' would be untrained")

    def _requested(self) -> list[str]:
        req = [a.strip() for a in str(self.augmentations).split(",") if a.strip()]
        bad = [a for a in req if a not in HARD_AUGMENTATIONS]
        if bad:
            raise ValueError(f"unknown augmentation(s) {bad}; choose from {', '.join(HARD_AUGMENTATIONS)}")
        if not req:
            raise ValueError("augmentations is empty")
        return req

    def _aug_names(self, check_only: bool = False) -> list[str]:
        """The augmentation set S actually used: mixup only with auxiliary images."""
        req = self._requested()
        has_aux = self._aux is not None or bool(self.aux_dataset)
        return [a for a in req if a != "mixup" or has_aux]

    # ------------------------------------------------------------------ public extras
    def set_auxiliary(self, images: ImageInput) -> "UNODE":
        """Auxiliary images for mixup negatives (any size/channels); used by the next ``fit``."""
        self._aux = as_images(images, name="auxiliary images")
        return self

    def fit(self, images: ImageInput, val: ImageInput | None = None, labels: Any = None) -> "UNODE":
        """Fit on normal images; ``labels`` (optional, one class id per image) turns on the
        labeled multi-class mode (same-class views are extra positives)."""
        self._validate()
        if labels is not None:
            lab = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
            n = len(images) if hasattr(images, "__len__") else None
            if n is not None and len(lab) != n:
                raise ValueError(f"labels: got {len(lab)} labels for {n} images")
            self._labels = lab
        else:
            self._labels = None
        return super().fit(images, val)  # type: ignore[return-value]

    # ------------------------------------------------------------------ internals
    def _to_model(self, x: torch.Tensor) -> torch.Tensor:
        return resize(match_channels(x, 3), self.image_size)

    def _load_aux(self) -> torch.Tensor | None:
        """Auxiliary images for mixup at the model's size and 3 channels (None: no mixup); the
        source and count are kept (``aux_source_``, ``aux_count_``) for :meth:`diagnostics`."""
        self.aux_source_, self.aux_count_ = None, 0
        if self._aux is not None:
            self.aux_source_, self.aux_count_ = "set_auxiliary", min(len(self._aux), self.aux_max)
            return self._to_model(self._aux[: self.aux_max])
        if not self.aux_dataset:
            return None
        from ..data import load_dataset
        from ..data.protocols import cap_per_class

        kw = {"data_dir": self.aux_data_dir} if self.aux_data_dir else {}
        ds = load_dataset(self.aux_dataset, split="train", **kw)
        keep = cap_per_class(ds.labels, self.aux_max, self.seed)
        self.aux_source_, self.aux_count_ = f"{ds.name or self.aux_dataset}:train", len(keep)
        return self._to_model(as_images(ds.images[keep], name="auxiliary images"))

    def _fit_weights(self, x: torch.Tensor, aux: torch.Tensor | None) -> None:
        names = self._aug_names()
        self.aug_names_ = names
        self.divergences_: dict[str, float] = {}
        if self.aug_weights == "none":
            self.weights_, self.weights_source_ = {}, "none (no negatives)"
            return
        if self.aug_weights == "uniform":
            self.weights_, self.weights_source_ = {n: 1.0 / len(names) for n in names}, "uniform"
            return
        if self.aug_weights != "auto":
            self.weights_, self.weights_source_ = parse_weights(self.aug_weights, names), "given"
            return
        if not self.extractor_weights:
            warnings.warn("UNODE: aug_weights='auto' without extractor_weights: AutoAugOOD cannot run, so the "
                          "augmentation weights fall back to uniform. Pass extractor_weights=<MobileNetV2 "
                          "safetensors> to weight them.", stacklevel=3)
            self.weights_, self.weights_source_ = {n: 1.0 / len(names) for n in names}, "uniform (no extractor)"
            return
        from ..nets.mobilenet import load_mobilenet_v2

        ext = load_mobilenet_v2(self.extractor_weights, input_size=self.extractor_size).to(self.device_).eval()

        def embed(b: torch.Tensor) -> torch.Tensor:
            return ext.embed(b.to(self.device_))

        self.weights_, self.divergences_ = autoaugood_weights(
            x, embed, names, aux=aux, n_samples=self.autoaug_samples, tsne_dim=self.tsne_dim,
            divergence_kind=self.divergence, temperature=self.autoaug_temperature, seed=self.seed)
        self.weights_source_ = f"autoaugood (MobileNetV2 features, {self.tsne_dim}-D t-SNE, {self.divergence})"
        del ext

    def _build(self) -> None:
        self.backbone_ = _Backbone(self.backbone, self.width, self.backbone_input_size).to(self.device_)
        self.heads_ = _Heads(self.backbone_.dim, self.proj_dim).to(self.device_)

    def _feats(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone_(x)

    def _fit(self, x: torch.Tensor, val: torch.Tensor | None) -> None:
        xm = self._to_model(x)
        aux = self._load_aux()
        self._fit_weights(xm, aux)
        self._build()
        if self.backbone_weights:
            self.backbone_.load_pretrained(self.backbone_weights)
            self.backbone_.to(self.device_)
            if self.trainable_blocks > 0:
                stages = self.backbone_.stages()
                for st in stages[: max(0, len(stages) - self.trainable_blocks)]:
                    freeze(st)  # weights and BatchNorm running statistics stay pretrained
        params = [p for p in list(self.backbone_.parameters()) + list(self.heads_.parameters()) if p.requires_grad]
        opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, weight_decay=self.weight_decay)
        sampler = NegativeSampler(self.weights_, aux=aux, max_compose=self.max_compose, seed=self.seed) \
            if self.weights_ else None
        views = PositiveViews((self.image_size, self.image_size), 3).to(self.device_)
        use_con = self.loss_terms in ("both", "con")
        use_ce = self.loss_terms in ("both", "ce") and sampler is not None
        labels = self._labels
        data: tuple[torch.Tensor, ...] = (xm,) if labels is None else (xm, labels)

        def set_lr(epoch: int) -> None:
            if self.warmup_epochs > 0 and epoch < self.warmup_epochs:
                f = (epoch + 1) / self.warmup_epochs
            else:
                t = (epoch - self.warmup_epochs) / max(1, self.epochs - self.warmup_epochs)
                f = 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
            for gp in opt.param_groups:
                gp["lr"] = self.lr * max(f, 1e-3)

        set_lr(0)

        def step(batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
            xb = batch[0]
            B = xb.shape[0]
            parts = [views(xb), views(xb)]
            if sampler is not None:
                neg = sampler(xb.cpu()).to(xb.device)
                parts += [views(neg), views(neg)]
            f = self._feats(torch.cat(parts))
            losses: dict[str, torch.Tensor] = {}
            total = f.new_zeros(())
            if use_con:
                z = self.heads_.proj(f)
                lab = batch[1] if len(batch) > 1 else None
                con = nt_xent_with_negatives(z[:2 * B], z[2 * B:] if sampler is not None else None,
                                             self.temperature, self.contrast_inliers, lab)
                losses["con"] = con
                total = total + con
            if use_ce:
                logits = self.heads_.cls(f)
                y = torch.cat([torch.ones(2 * B), torch.zeros(2 * B)]).long().to(f.device)
                ce = F.cross_entropy(logits, y)
                losses["ce"] = ce
                total = total + self.lam * ce
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
            losses["loss"] = total.detach()
            return losses

        self.history_ = train_loop(step, data, modules={"backbone": self.backbone_, "heads": self.heads_},
                                   epochs=self.epochs, batch_size=self.batch_size, device=self.device_,
                                   seed=self.seed, on_epoch_end=lambda e, logs: set_lr(e + 1),
                                   drop_last=xm.shape[0] >= 2 * self.batch_size, desc="unode")
        self.backbone_.eval()
        self.heads_.eval()
        self.head_trained_ = bool(use_ce)
        z, p = self._embed(xm, views=1)
        self.collapsed_ = features_collapsed(z)
        if self.collapsed_:
            warnings.warn("unode: training collapsed the projections (constant or non-finite for every normal "
                          "image), so the similarity score is meaningless; a lower lr or more negatives may help. "
                          "The model is kept and marked collapsed_=True (benchmark records exclude it from means).",
                          RuntimeWarning, stacklevel=3)
        self.index_ = KNNIndex("Flat", metric="cosine", gpu="auto", seed=self.seed).fit(z)
        if len(z) > 1:
            sim = self.index_.score(z, k=1, agg="kth", exclude_self=True)
        else:
            sim = np.ones(1)
        self.sim_mean_ = float(np.mean(sim))
        self.bin_mean_ = float(np.mean(p))
        if abs(self.sim_mean_) < 1e-8 or self.bin_mean_ < 1e-8:
            raise RuntimeError("UNODE: degenerate training statistics (mean similarity or P(normal) is 0)")

    def _aux_info(self) -> dict[str, Any]:
        return {"aux_source": getattr(self, "aux_source_", None), "aux_images": int(getattr(self, "aux_count_", 0))}

    def diagnostics(self) -> dict[str, Any]:
        """What a benchmark record should keep about this fit: the AutoAugOOD weights and
        divergences, where the weights came from, and whether training collapsed."""
        self._check_fitted()
        return {"aug_weights": dict(self.weights_), "aug_divergences": dict(self.divergences_),
                "aug_weights_source": self.weights_source_, "head_trained": bool(self.head_trained_),
                "collapsed": bool(getattr(self, "collapsed_", False)),
                "fallback": "collapsed" if getattr(self, "collapsed_", False) else None, **self._aux_info()}

    def _embed(self, xm: torch.Tensor, views: int) -> tuple[np.ndarray, np.ndarray]:
        """Projections of view 0 and P(normal) averaged over the first ``views`` test views."""
        def fn(b: torch.Tensor) -> torch.Tensor:
            f = self._feats(b)
            z = F.normalize(self.heads_.proj(f), dim=1)
            p = F.softmax(self.heads_.cls(f), 1)[:, 1:2]
            return torch.cat([z, p], 1)

        zs, ps = [], []
        for v in range(views):
            out = map_batches(fn, _TEST_VIEWS[v](xm), batch_size=256, device=self.device_)
            zs.append(out[:, :-1].numpy())
            ps.append(out[:, -1].numpy())
        return zs[0] if views == 1 else np.stack(zs), np.mean(ps, 0)

    def _components(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        xm = self._to_model(x)
        z, p = self._embed(xm, views=self.test_views)
        if z.ndim == 3:
            sim = np.mean([self.index_.score(zv, k=1, agg="kth") for zv in z], 0)
        else:
            sim = self.index_.score(z, k=1, agg="kth")
        return sim / self.sim_mean_, p / self.bin_mean_

    def score_components(self, images: ImageInput) -> dict[str, np.ndarray]:
        """The two normalised score terms per image (higher = more normal): ``sim`` =
        O_sim / mean_train(O_sim) and ``bin`` = P(normal) / mean_train(P(normal)); the novelty
        score is ``-(sim + score_lambda * bin)``; ``bin`` is left out when the binary head was not trained."""
        x = self._prepare(images)
        with torch.no_grad():
            sim, p = self._components(x)
        out = {"sim": sim.astype(np.float64)}
        if self.head_trained_:
            out["bin"] = p.astype(np.float64)
        return out

    def _score(self, x: torch.Tensor) -> np.ndarray:
        sim, p = self._components(x)
        s = np.zeros(len(x))
        if self.score_terms in ("both", "sim"):
            s += sim
        if self.score_terms in ("both", "bin") and self.head_trained_:
            s += self.score_lambda * p
        return -s

    # ------------------------------------------------------------------ persistence
    def _state(self) -> dict[str, Any]:
        st = {**module_state("backbone", self.backbone_), **module_state("heads", self.heads_)}
        st.update(self.index_.state("knn")[0])
        names = list(self.weights_)
        if names:
            st["autoaug.weights"] = np.array([self.weights_[n] for n in names], np.float64)
        if self.divergences_:
            st["autoaug.divergences"] = np.array([self.divergences_[n] for n in names], np.float64)
        return st

    def _meta(self) -> dict[str, Any]:
        return {"knn": self.index_.state("knn")[1], "sim_mean": self.sim_mean_, "bin_mean": self.bin_mean_,
                "aug_names": self.aug_names_, "weights": self.weights_, "divergences": self.divergences_,
                "weights_source": self.weights_source_, "head_trained": self.head_trained_,
                "collapsed": bool(getattr(self, "collapsed_", False)),
                "history": [dict(e) for e in getattr(self, "history_", None).epochs] if getattr(
                    self, "history_", None) else []}

    def _restore(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        self._build()
        load_module_state("backbone", self.backbone_, state)
        load_module_state("heads", self.heads_, state)
        self.backbone_.eval()
        self.heads_.eval()
        self.index_ = KNNIndex.from_state(state, meta["knn"], "knn")
        self.sim_mean_ = float(meta["sim_mean"])
        self.bin_mean_ = float(meta["bin_mean"])
        self.aug_names_ = list(meta.get("aug_names", []))
        self.weights_ = {k: float(v) for k, v in meta.get("weights", {}).items()}
        self.divergences_ = {k: float(v) for k, v in meta.get("divergences", {}).items()}
        self.weights_source_ = meta.get("weights_source", "")
        self.collapsed_ = bool(meta.get("collapsed", False))
        self.head_trained_ = bool(meta.get("head_trained", True))


def _crop(x: torch.Tensor, top: float, left: float, frac: float = 0.875) -> torch.Tensor:
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * frac)), max(1, round(w * frac))
    t, l_ = round((h - ch) * top), round((w - cw) * left)
    return F.interpolate(x[..., t:t + ch, l_:l_ + cw], size=(h, w), mode="bilinear", align_corners=False)


# deterministic test-time views (batch-independent): identity, flip, 4 corner crops, centre crop, flipped centre
_TEST_VIEWS = [
    lambda x: x,
    lambda x: x.flip(-1),
    lambda x: _crop(x, 0, 0),
    lambda x: _crop(x, 0, 1),
    lambda x: _crop(x, 1, 0),
    lambda x: _crop(x, 1, 1),
    lambda x: _crop(x, 0.5, 0.5),
    lambda x: _crop(x, 0.5, 0.5).flip(-1),
]
