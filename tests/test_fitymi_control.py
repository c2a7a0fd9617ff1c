"""FITYMI's non-generative control (issue 13.3): ``fakes="blur-noise"`` fine-tunes against blurred and
noised normal images instead of the score-SDE's samples, at the same budget (``n_fakes``, schedule).
Its real-data AUROC floor is in ``tests/test_fitymi.py::test_real_weights_fashion_mnist_dn2_and_fitymi``."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import noveltylab as nl
from noveltylab.methods.fitymi import FAKES, blur_noise_fakes


def test_blur_noise_fakes_shape_range_and_difference():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(10, 3, 32, 32, generator=g)
    f = blur_noise_fakes(x, 25, seed=1)  # more fakes than images: the images are cycled
    assert f.shape == (25, 3, 32, 32) and f.dtype == x.dtype
    assert float(f.min()) >= 0.0 and float(f.max()) <= 1.0
    # each fake is a blurred + noised copy of some normal image: close to one of them, equal to none
    d = (f[:, None] - x[None]).abs().mean((2, 3, 4))  # (25, 10) mean absolute differences
    assert float(d.min(1).values.min()) > 0.02
    torch.testing.assert_close(f, blur_noise_fakes(x, 25, seed=1), rtol=0, atol=0)  # seeded
    assert not torch.equal(f, blur_noise_fakes(x, 25, seed=2))
    smooth = blur_noise_fakes(torch.full((4, 1, 28, 28), 0.5), 4, seed=0)
    assert 0.03 < float((smooth - 0.5).std()) < 0.2  # the noise is there, within NOISE_STD


def test_blur_noise_fit_uses_no_generator_and_round_trips(digits_split, tmp_path):
    det = nl.create("fitymi", profile="test", device="cpu", fakes="blur-noise", n_fakes=40)
    det.fit(digits_split.train)
    assert det.fakes_.shape == (40, *det.input_shape_)
    assert float(det.fakes_.min()) >= 0 and float(det.fakes_.max()) <= 1
    assert not hasattr(det, "generator_")  # no score model was trained
    diag = det.diagnostics()
    assert diag["gen_checks"] == [] and diag["fid_rule"]["rule"] == "blur-noise fakes (no generator)"
    s = det.score(digits_split.test)
    det.save(tmp_path / "m")
    loaded = nl.load(tmp_path / "m")
    assert loaded.fakes == "blur-noise" and loaded.get_params()["fakes"] == "blur-noise"
    np.testing.assert_allclose(loaded.score(digits_split.test), s, rtol=1e-5)
    default = nl.create("fitymi", profile="test")
    assert default.fakes == "generator" and FAKES == ("generator", "blur-noise")


def test_blur_noise_fakes_default_count_is_the_normal_count(digits_split):
    det = nl.create("fitymi", profile="test", device="cpu", fakes="blur-noise", n_fakes=None).fit(digits_split.train)
    assert det.fakes_.shape[0] == len(digits_split.train)


@pytest.mark.parametrize("bad", ["gan", "Blur-Noise", ""])
def test_bad_fakes_value_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"fakes must be one of \('generator', 'blur-noise'\)"):
        nl.create("fitymi", profile="test", fakes=bad)
