"""Issue 17 item 4: every constructor argument of every registered detector is validated at
construction, with a message naming it; calibrate refuses nonsense."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

import noveltylab
from noveltylab.detector import available, get_class
from noveltylab.validation import _kinds


def _params():
    out = []
    for name in available():
        cls = get_class(name)
        init = next(k.__init__ for k in cls.__mro__ if "__init__" in vars(k))
        for p in list(inspect.signature(init).parameters.values())[1:]:
            out.append((name, p.name, p.annotation))
    return out


PARAMS = _params()


def _bad_values(param: str, annotation) -> list:
    kinds, _ = _kinds(annotation)
    bad = []
    if "str" not in kinds:
        bad.append("not-a-value")
    if "int" in kinds and "float" not in kinds:
        bad += [-1, 2.5, True]
    if "float" in kinds and "str" not in kinds:
        bad.append(float("nan"))
    if kinds == {"bool"}:
        bad = ["yes", 2]
    return bad


def test_every_profile_and_default_constructs():
    for name in available():
        cls = get_class(name)
        cls()
        for profile in cls.profiles:
            noveltylab.create(name, profile=profile)


@pytest.mark.parametrize("method, param, annotation", PARAMS, ids=[f"{m}-{p}" for m, p, _ in PARAMS])
def test_bad_value_is_refused_naming_the_parameter(method, param, annotation):
    for bad in _bad_values(param, annotation):
        with pytest.raises((ValueError, TypeError)) as err:
            noveltylab.create(method, **{param: bad})
        assert param in str(err.value), f"{method}({param}={bad!r}): {err.value}"


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "cae-re: epochs must be an integer >= 1, got 0"),
    ({"depth": -2}, "cae-re: depth must be an integer >= 1, got -2"),
    ({"width": 0}, "cae-re: width must be an integer >= 1, got 0"),
    ({"lr": -1.0}, "cae-re: lr must be > 0, got -1.0"),
    ({"lr": 0}, "cae-re: lr must be > 0, got 0"),
    ({"lr": "fast"}, "cae-re: lr must be a number, got 'fast' (str)"),
    ({"lr": float("inf")}, "cae-re: lr must be finite, got inf"),
    ({"seed": 2 ** 70}, "cae-re: seed must be an integer <= 9223372036854775807, got 1180591620717411303424"),
    ({"seed": -1}, "cae-re: seed must be an integer >= 0, got -1"),
    ({"seed": 1.5}, "cae-re: seed must be an integer, got 1.5 (float)"),
    ({"device": "foo"}, "cae-re: unknown device 'foo'; use 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ({"device": 3}, "cae-re: device must be a string such as 'auto', 'cpu' or 'cuda', got 3"),
    ({"batch_size": 0}, "cae-re: batch_size must be an integer >= 1, got 0"),
])
def test_exact_messages(kwargs, message):
    with pytest.raises((ValueError, TypeError)) as err:
        noveltylab.create("cae-re", **kwargs)
    assert str(err.value) == message


def test_k_zero_is_refused_at_construction_not_at_calibrate():
    for method in ("raw-nn", "dn2", "nln-ae"):
        with pytest.raises(ValueError, match="k"):
            noveltylab.create(method, k=0)


def test_valid_device_strings():
    for dev in ("auto", "cpu", "cuda", "cuda:1"):
        assert noveltylab.create("raw-nn", device=dev).device == dev


def test_load_revalidates_params(tmp_path):
    """A saved config whose params no longer validate is a ModelFileError naming the parameter."""
    from noveltylab.detector import ModelFileError

    from hardening_util import forge

    det = noveltylab.create("raw-nn", device="cpu").fit(np.random.default_rng(0).random((6, 8, 8)))
    det.save(tmp_path / "m")
    forge(tmp_path / "m", lambda cfg: cfg["params"].update(k=0))
    with pytest.raises(ModelFileError, match="k must be an integer >= 1, got 0"):
        noveltylab.load(tmp_path / "m")


# --- calibrate -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted():
    x = np.random.default_rng(0).random((20, 8, 8)).astype(np.float32)
    return noveltylab.create("raw-nn", device="cpu").fit(x[:15]), x[15:]


def test_calibrate_on_one_image_raises(fitted):
    det, held = fitted
    with pytest.raises(ValueError, match="calibrate needs at least 2 held-out normal images, got 1"):
        det.calibrate(held[:1], fpr=0.1)


@pytest.mark.parametrize("fpr, exc, message", [
    (2, ValueError, "fpr must be in (0, 1), got 2"),
    (0.0, ValueError, "fpr must be in (0, 1), got 0.0"),
    ("0.1", TypeError, "fpr must be a number, got '0.1' (str)"),
    (float("nan"), ValueError, "fpr must be finite, got nan"),
])
def test_calibrate_bad_fpr(fitted, fpr, exc, message):
    det, held = fitted
    with pytest.raises(exc) as err:
        det.calibrate(held, fpr=fpr)
    assert str(err.value) == message
