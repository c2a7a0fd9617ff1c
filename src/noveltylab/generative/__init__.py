"""Score-based generative models (Song et al. 2021) for FITYMI's fake near-anomalies.

* :mod:`.sde`: VP and VE SDEs; :mod:`.score_net`: a small time-conditioned U-Net;
* :mod:`.sampler`: reverse-SDE Euler-Maruyama (+ optional Langevin corrector);
* :mod:`.model`: :class:`ScoreModel` - training via ``train_loop`` with
  checkpoints, FID-based early stopping, sampling;
* :mod:`.fid`: Frechet distance and feature extractors;
* :mod:`.io`: save generated sets as an image folder (readable by
  ``load_dataset("folder:...")``) and sample grids as PNG (for scripts; the
  detectors do no file I/O).
"""
from .fid import feature_extractor, fid, frechet_distance
from .model import Check, ScoreModel
from .sampler import euler_maruyama
from .score_net import ScoreUNet
from .sde import SDE, VESDE, VPSDE, make_sde

__all__ = ["Check", "SDE", "ScoreModel", "ScoreUNet", "VESDE", "VPSDE", "euler_maruyama", "feature_extractor",
           "fid", "frechet_distance", "make_sde"]
