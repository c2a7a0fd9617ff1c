"""anomalib's PatchCore / PaDiM on images handed over by ``benchmarks/anomalib_side_by_side.py``.

Runs in the peer virtual environment (``.venv-peer``: torch 2.14.1, torchvision, anomalib; never a
dependency of noveltylab) and imports nothing from noveltylab. It builds anomalib's own torch models
(``PatchcoreModel`` / ``PadimModel``: their feature pooling, embedding, k-center-greedy coreset,
nearest-neighbour re-weighted score, Gaussian fit, Mahalanobis map and anomaly-map blur), with the timm
MobileNetV2 (``mobilenetv2_100``) that anomalib uses for that backbone name, given the shared weights:

* the shared file has torchvision's key names; they are renamed to timm's (``TIMM_KEYS`` below);
* the weights come from a TensorFlow model, so timm is built with ``pad_type="same"`` (TF padding);
* images are resized to 224 (bilinear, no antialias) and scaled to [-1, 1], exactly as noveltylab does.

The worker first checks that its backbone reproduces noveltylab's feature maps on the handed-over
images (``check_maps`` in the input file), so the comparison measures the methods, not the backbone.

  .venv-peer/bin/python benchmarks/peer/anomalib_worker.py IN.npz OUT.npz --method patchcore --coreset 0.1
"""
from __future__ import annotations

import argparse
import json
import re
import time

import numpy as np
import torch
import torch.nn.functional as F

# torchvision MobileNetV2 ``features.i`` -> timm ``blocks.s.j`` (stage sizes 1, 2, 3, 4, 3, 3, 1)
_STAGES = [1, 2, 3, 4, 3, 3, 1]
_BLOCK_OF = {}
_i = 1
for _s, _n in enumerate(_STAGES):
    for _j in range(_n):
        _BLOCK_OF[_i] = f"blocks.{_s}.{_j}"
        _i += 1


def timm_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a torchvision ``mobilenet_v2`` state dict to timm ``mobilenetv2_100`` names."""
    out = {}
    for k, v in state.items():
        m = re.match(r"features\.(\d+)\.(.*)", k)
        if not m:
            continue  # classifier: not part of a features_only model
        i, rest = int(m.group(1)), m.group(2)
        if i == 0:
            new = {"0": "conv_stem", "1": "bn1"}[rest.split(".")[0]] + rest[1:]
        elif i == 18:
            continue  # conv_head: not part of a features_only model
        elif i == 1:  # depthwise-separable block: conv.0.0 dw, conv.0.1 bn, conv.1 pw, conv.2 bn
            sub = {"conv.0.0": "conv_dw", "conv.0.1": "bn1", "conv.1": "conv_pw", "conv.2": "bn2"}
            head = next(p for p in sorted(sub, key=len, reverse=True) if rest.startswith(p + "."))
            new = f"{_BLOCK_OF[i]}.{sub[head]}{rest[len(head):]}"
        else:  # inverted residual: conv.0.0 pw, conv.0.1 bn, conv.1.0 dw, conv.1.1 bn, conv.2 pwl, conv.3 bn
            sub = {"conv.0.0": "conv_pw", "conv.0.1": "bn1", "conv.1.0": "conv_dw", "conv.1.1": "bn2",
                   "conv.2": "conv_pwl", "conv.3": "bn3"}
            head = next(p for p in sorted(sub, key=len, reverse=True) if rest.startswith(p + "."))
            new = f"{_BLOCK_OF[i]}.{sub[head]}{rest[len(head):]}"
        out[new] = v
    return out


def backbone_input(x_uint8: np.ndarray) -> torch.Tensor:
    """NHWC/NCHW uint8 (1 or 3 channels) -> RGB 224 x 224 in [-1, 1] (noveltylab's preprocessing)."""
    x = torch.from_numpy(x_uint8).float() / 255.0
    if x.ndim == 3:
        x = x[:, None]
    elif x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False, antialias=False)
    return x * 2.0 - 1.0


def install_backbone(model: torch.nn.Module, weights: str, layers: list[str]) -> None:
    """Replace the anomalib model's timm extractor by one with TF padding, loaded with the shared weights."""
    import timm
    from safetensors.torch import load_file

    fe = model.feature_extractor
    net = timm.create_model("mobilenetv2_100", pretrained=False, features_only=True, exportable=True,
                            out_indices=fe.idx, pad_type="same")
    state = timm_keys(load_file(weights))
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing:
        raise SystemExit(f"timm backbone keys without a weight: {missing[:5]}")
    fe.feature_extractor = net.eval()


def batches(x: np.ndarray, n: int = 32):
    for i in range(0, len(x), n):
        yield backbone_input(x[i:i + n])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inp")
    p.add_argument("out")
    p.add_argument("--method", choices=["patchcore", "padim"], required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--coreset", type=float, default=0.1, help="PatchCore coreset_sampling_ratio (anomalib: 0.1)")
    p.add_argument("--n-features", type=int, default=100, help="PaDiM n_features")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--maps", action="store_true", help="return anomaly maps (224 x 224)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)  # anomalib's coreset projection draws from numpy's global RNG (random_state=None)
    d = np.load(a.inp)
    t0 = time.perf_counter()
    if a.method == "patchcore":
        from anomalib.models.image.patchcore.torch_model import PatchcoreModel

        layers = ["blocks.2", "blocks.4"]
        model = PatchcoreModel(layers=layers, backbone="mobilenetv2_100", pre_trained=False, num_neighbors=9)
    else:
        from anomalib.models.image.padim.torch_model import PadimModel

        layers = ["blocks.1", "blocks.2", "blocks.4"]
        model = PadimModel(layers=layers, backbone="mobilenetv2_100", pre_trained=False, n_features=a.n_features)
    install_backbone(model, a.weights, layers)
    if a.method == "padim" and "padim_idx" in d.files:  # the same random channel subset as noveltylab's
        model.idx = torch.from_numpy(d["padim_idx"]).long()
    info: dict = {"anomalib_layers": layers}
    if "check_images" in d.files:  # the backbone must reproduce noveltylab's maps
        with torch.no_grad():
            feats = model.feature_extractor(backbone_input(d["check_images"]))
        diffs = []
        for i, layer in enumerate(layers):
            ours = torch.from_numpy(d[f"check_map{i}"])
            theirs = feats[layer]
            diffs.append(float((theirs - ours).abs().max() / ours.abs().max().clamp_min(1e-12)))
        info["backbone_max_rel_diff"] = diffs
    model.train()
    with torch.no_grad():
        for xb in batches(d["train"]):
            model(xb)
    if a.method == "patchcore":
        model.subsample_embedding(a.coreset)
    else:
        model.fit()
    t_fit = time.perf_counter() - t0
    model.eval()
    scores, maps = [], []
    t1 = time.perf_counter()
    with torch.no_grad():
        for xb in batches(d["test"]):
            out = model(xb)
            scores.append(out.pred_score.reshape(-1).numpy())
            if a.maps:
                maps.append(out.anomaly_map[:, 0].numpy().astype(np.float32))
    info.update(fit_seconds=round(t_fit, 2), score_seconds=round(time.perf_counter() - t1, 2),
                memory_rows=int(model.memory_bank.shape[0]) if a.method == "patchcore" else None)
    out = {"scores": np.concatenate(scores), "info": np.array(json.dumps(info))}
    if a.maps:
        out["maps"] = np.concatenate(maps)
    np.savez(a.out, **out)


if __name__ == "__main__":
    main()
