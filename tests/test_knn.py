"""Tests for noveltylab.knn.KNNIndex against brute-force numpy."""
from __future__ import annotations

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from noveltylab.knn import AGGREGATIONS, KNNIndex  # noqa: E402

CPU = dict(gpu=False)


@pytest.fixture(scope="module", autouse=True)
def _one_faiss_thread():
    """Small indexes train far faster on one OpenMP thread, above all on a busy machine
    (spinning thread barriers); restore FAISS's setting afterwards."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


# --- helpers ------------------------------------------------------------------
def _rand(n, d, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)


def _clustered(n, d, n_clusters=16, spread=0.15, seed=0):
    """Gaussian mixture: well-separated centres, small isotropic spread."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, d)).astype(np.float32) * 2.0
    lab = rng.integers(0, n_clusters, n)
    return (centres[lab] + spread * rng.standard_normal((n, d))).astype(np.float32)


def _product_clustered(n, d, block=4, protos=16, noise=0.02, seed=0):
    """Clustered data with product structure: every 4-d block of a vector is one of 16
    prototypes plus small noise, the structure product quantizers are built for."""
    rng = np.random.default_rng(seed)
    P = rng.standard_normal((d // block, protos, block))
    lab = rng.integers(0, protos, (n, d // block))
    x = np.concatenate([P[j][lab[:, j]] for j in range(d // block)], 1)
    return (x + noise * rng.standard_normal((n, d))).astype(np.float32)


def _sqdist(q, x):
    q = q.astype(np.float64)
    x = x.astype(np.float64)
    return (q * q).sum(1)[:, None] - 2 * q @ x.T + (x * x).sum(1)[None, :]


def _brute_l2(x, q, k):
    d2 = _sqdist(q, x)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d2, idx, 1), idx


def _brute_sim(x, q, k):
    sim = q.astype(np.float64) @ x.astype(np.float64).T
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sim, idx, 1), idx


def _normalise(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    x = _rand(600, 24, seed=1)
    q = _rand(40, 24, seed=2)
    return x, q


@pytest.fixture(scope="module")
def clustered():
    """Stored clustered set, queries near (not equal to) stored points, exact nearest ids."""
    x = _product_clustered(2000, 32, seed=3)
    rng = np.random.default_rng(4)
    q = x[rng.choice(len(x), 200, replace=False)] + 0.02 * rng.standard_normal((200, 32)).astype(np.float32)
    exact = _brute_l2(x, q, 1)[1][:, 0]
    return x, q.astype(np.float32), exact


_BUILT: dict = {}


@pytest.fixture(scope="module")
def built(clustered):
    """One build per factory string on the clustered data, shared by the tests
    (8-bit PQ training is the slow part of this file)."""
    x = clustered[0]

    def get(factory):
        if factory not in _BUILT:
            _BUILT[factory] = KNNIndex(factory, **CPU).fit(x)
        return _BUILT[factory]

    yield get
    _BUILT.clear()


# --- exact search ----------------------------------------------------------------
def test_flat_equals_brute_force(data):
    x, q = data
    idx = KNNIndex("Flat", **CPU).fit(x)
    D, I = idx.search(q, k=7)
    Db, Ib = _brute_l2(x, q, 7)
    assert D.shape == I.shape == (40, 7)
    assert D.dtype == np.float32 and I.dtype == np.int64
    np.testing.assert_array_equal(I, Ib)
    np.testing.assert_allclose(D, Db, rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(D, axis=1) >= 0)  # nearest first
    assert idx.ntotal == 600 and idx.dim == 24


@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_aggregations_l2(data, agg):
    x, q = data
    k = 5
    idx = KNNIndex("Flat", **CPU).fit(x)
    Db, _ = _brute_l2(x, q, k)
    expected = {
        "kth": Db[:, -1],
        "mean": np.sqrt(Db).mean(1),
        "sum": np.sqrt(Db).sum(1),
        "sumsq": Db.sum(1),
        "max": Db.max(1),
    }[agg]
    got = idx.score(q, k=k, agg=agg)
    assert got.shape == (len(q),) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("agg", AGGREGATIONS)
def test_aggregations_similarity(data, agg):
    x, q = data
    k = 4
    idx = KNNIndex("Flat", metric="ip", **CPU).fit(x)
    Sb, _ = _brute_sim(x, q, k)
    expected = {
        "kth": Sb[:, -1],
        "mean": Sb.mean(1),
        "sum": Sb.sum(1),
        "sumsq": (Sb ** 2).sum(1),
        "max": Sb.max(1),
    }[agg]
    np.testing.assert_allclose(idx.score(q, k=k, agg=agg), expected, rtol=1e-4, atol=1e-4)


def test_unknown_aggregation(data):
    x, q = data
    idx = KNNIndex("Flat", **CPU).fit(x)
    with pytest.raises(ValueError, match="aggregation"):
        idx.score(q, k=2, agg="median")


def test_inner_product(data):
    x, q = data
    D, I = KNNIndex("Flat", metric="ip", **CPU).fit(x).search(q, k=5)
    Sb, Ib = _brute_sim(x, q, 5)
    np.testing.assert_array_equal(I, Ib)
    np.testing.assert_allclose(D, Sb, rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(D, axis=1) <= 0)  # most similar first


def test_cosine(data):
    x, q = data
    scale = np.random.default_rng(5).uniform(0.1, 10, (len(x), 1)).astype(np.float32)
    idx = KNNIndex("Flat", metric="cosine", **CPU).fit(x * scale)  # cosine ignores norms
    D, I = idx.search(q * 3.0, k=5)
    Sb, Ib = _brute_sim(_normalise(x), _normalise(q), 5)
    np.testing.assert_array_equal(I, Ib)
    np.testing.assert_allclose(D, Sb, rtol=1e-4, atol=1e-5)
    assert np.all(D <= 1 + 1e-5) and np.all(D >= -1 - 1e-5)


def test_flat_odd_dimension_exact():
    x, q = _rand(300, 30, seed=6), _rand(20, 30, seed=7)
    idx = KNNIndex("Flat", **CPU).fit(x)
    assert idx.index.d == 30  # nothing to pad for Flat
    D, I = idx.search(q, k=3)
    Db, Ib = _brute_l2(x, q, 3)
    np.testing.assert_array_equal(I, Ib)
    np.testing.assert_allclose(D, Db, rtol=1e-4, atol=1e-4)


# --- padding to the PQ multiple --------------------------------------------------
def test_pq_dimension_not_divisible_is_padded():
    x, q = _clustered(2000, 30, seed=8), _clustered(30, 30, seed=8)[:30]
    idx = KNNIndex("PQ8x4", **CPU).fit(x)
    assert idx.dim == 30 and idx.index.d == 32
    D, I = idx.search(q, k=3)
    assert D.shape == I.shape == (30, 3)
    assert np.all((I >= 0) & (I < 2000)) and np.all(D >= 0)
    assert idx.bytes_per_vector == 4.0  # 8 sub-quantizers x 4 bits
    with pytest.raises(ValueError, match="dimension"):
        idx.search(_rand(2, 32), k=1)  # the user-facing dimension stays 30


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_zero_padding_keeps_exact_distances(metric):
    """``OPQ8,Flat`` needs d divisible by 8: d=30 is zero-padded to 32, then rotated
    orthogonally and searched exactly, so distances must equal brute force on d=30."""
    x, q = _rand(800, 30, seed=9), _rand(25, 30, seed=10)
    idx = KNNIndex("OPQ8,Flat", metric=metric, **CPU).fit(x)
    assert idx.index.d == 32
    D, I = idx.search(q, k=4)
    Db, Ib = (_brute_l2 if metric == "l2" else _brute_sim)(x, q, 4)
    np.testing.assert_array_equal(I, Ib)
    np.testing.assert_allclose(D, Db, rtol=1e-3, atol=1e-3)


# --- quantized indexes -------------------------------------------------------------
@pytest.mark.parametrize("factory,min_recall", [("PQ8x4", 0.6), ("PQ8x4fs", 0.6), ("IVF16,PQ8", 0.9)])
def test_quantized_recall(clustered, built, factory, min_recall):
    x, q, exact = clustered
    idx = built(factory)
    assert idx.ntotal == len(x)
    D, I = idx.search(q, k=5)
    assert D.shape == I.shape == (len(q), 5)
    assert np.all(I >= 0) and np.all(np.diff(D, axis=1) >= -1e-6)
    recall1 = float(np.mean(I[:, 0] == exact))
    assert recall1 >= min_recall, f"{factory}: recall@1 {recall1:.3f}"
    assert np.mean(np.any(I == exact[:, None], axis=1)) >= recall1  # recall@5 >= recall@1
    # quantized squared distances stay near the exact ones
    Db, _ = _brute_l2(x, q, 1)
    rel = np.abs(D[:, 0] - Db[:, 0]).mean() / _sqdist(q[:5], x).mean()
    assert rel < 0.1


@pytest.mark.parametrize("factory,expected", [
    ("Flat", 4 * 128), ("PQ32x4", 16), ("PQ32x4fs", 16), ("PQ16", 16), ("PQ8x4fs", 4),
    ("IVF16,PQ8", 8), ("IVF16,PQ16x4fs", 8),
])
def test_bytes_per_vector(factory, expected):
    x = _rand(300, 128, seed=11)  # >= 256: enough to train 8-bit sub-quantizers
    idx = KNNIndex(factory, **CPU).fit(x)
    assert idx.bytes_per_vector == float(expected)


def test_polysemous_training_skipped():
    """8-bit PQ from the factory would run polysemous training (tens of seconds, unused here)."""
    x = _rand(300, 32, seed=12)
    for factory in ("PQ8", "IVF4,PQ8"):
        idx = KNNIndex(factory, **CPU).fit(x)
        assert idx.index.do_polysemous_training is False  # IndexPQ / IndexIVFPQ


def test_bytes_per_vector_flat_odd_dim():
    assert KNNIndex("Flat", **CPU).fit(_rand(10, 30)).bytes_per_vector == 120.0


@pytest.mark.parametrize("factory", ["PQ8x4", "PQ8x4fs", "IVF16,PQ8"])
def test_pq_deterministic(clustered, built, factory):
    x, q, _ = clustered
    a = built(factory)
    b = KNNIndex(factory, seed=0, **CPU).fit(x)
    Da, Ia = a.search(q, k=5)
    Db, Ib = b.search(q, k=5)
    np.testing.assert_array_equal(Ia, Ib)
    np.testing.assert_array_equal(Da, Db)
    np.testing.assert_array_equal(a.to_bytes(), b.to_bytes())


def test_train_size_subset(clustered):
    x, q, exact = clustered
    a = KNNIndex("IVF16,PQ8x4fs", train_size=500, seed=3, **CPU).fit(x)
    b = KNNIndex("IVF16,PQ8x4fs", train_size=500, seed=3, **CPU).fit(x)
    assert a.ntotal == len(x)  # trains on a subset, adds everything
    Da, Ia = a.search(q, k=3)
    Db, Ib = b.search(q, k=3)
    np.testing.assert_array_equal(Ia, Ib)
    np.testing.assert_array_equal(Da, Db)
    assert np.mean(Ia[:, 0] == exact) >= 0.8
    # train_size larger than the data: same as training on everything
    full = KNNIndex("PQ8x4", **CPU).fit(x)
    big = KNNIndex("PQ8x4", train_size=10 * len(x), **CPU).fit(x)
    np.testing.assert_array_equal(full.to_bytes(), big.to_bytes())
    with pytest.raises(ValueError, match="train_size"):
        KNNIndex("PQ8x4", train_size=0)


# --- persistence ----------------------------------------------------------------
@pytest.mark.parametrize("factory,metric,dim", [
    ("Flat", "l2", 32), ("PQ8x4fs", "l2", 32), ("IVF16,PQ8", "l2", 32),
    ("PQ8x4", "ip", 30), ("IVF4,PQ8x4fs", "cosine", 30),  # odd dimension: padding survives the trip
])
def test_bytes_round_trip(clustered, built, factory, metric, dim):
    x, q, _ = clustered
    if dim == 32 and metric == "l2":
        a = built(factory)
    else:
        x, q = x[:, :dim], q[:, :dim]
        a = KNNIndex(factory, metric=metric, **CPU).fit(x)
    data = a.to_bytes()
    assert isinstance(data, np.ndarray) and data.dtype == np.uint8
    b = KNNIndex.from_bytes(data, dim=dim, factory=factory, metric=metric, gpu=False)
    for (Da, Ia), (Db, Ib) in [(a.search(q, 4), b.search(q, 4))]:
        np.testing.assert_array_equal(Ia, Ib)
        np.testing.assert_array_equal(Da, Db)
    assert b.ntotal == a.ntotal and b.bytes_per_vector == a.bytes_per_vector
    # detector state helpers
    arrays, meta = a.state("knn")
    c = KNNIndex.from_state(arrays, meta, "knn")
    np.testing.assert_array_equal(c.search(q, 4)[1], a.search(q, 4)[1])


@pytest.mark.parametrize("factory", ["Flat", "PQ8x4fs", "IVF16,PQ8"])
def test_save_load_round_trip(tmp_path, clustered, built, factory):
    x, q, _ = clustered
    a = built(factory)
    path = tmp_path / "index.faiss"
    a.save(str(path))
    b = KNNIndex.load(str(path), gpu=False)
    assert (b.dim, b.factory, b.metric) == (a.dim, a.factory, a.metric)
    Da, Ia = a.search(q, 3)
    Db, Ib = b.search(q, 3)
    np.testing.assert_array_equal(Ia, Ib)
    np.testing.assert_array_equal(Da, Db)


def test_from_bytes_errors(data):
    x, _ = data
    blob = KNNIndex("Flat", **CPU).fit(x).to_bytes()
    with pytest.raises(ValueError, match="dimension"):
        KNNIndex.from_bytes(blob, dim=16, factory="Flat", gpu=False)
    with pytest.raises(ValueError, match="corrupt"):
        KNNIndex.from_bytes(np.arange(50, dtype=np.uint8), dim=24, factory="Flat", gpu=False)


# --- batching ---------------------------------------------------------------------
@pytest.mark.parametrize("factory", ["Flat", "PQ8x4fs", "IVF16,PQ8"])
def test_batched_equals_unbatched(clustered, built, factory):
    x, q, _ = clustered
    big = built(factory)  # default batch_size (65536): one batch
    small = KNNIndex(factory, batch_size=7, **CPU).fit(x)
    np.testing.assert_array_equal(big.to_bytes(), small.to_bytes())
    Da, Ia = big.search(q, 4)
    Db, Ib = small.search(q, 4)
    np.testing.assert_array_equal(Ia, Ib)
    np.testing.assert_array_equal(Da, Db)
    if factory == "Flat":  # fit on a part, then add the rest in batches of 7
        inc = KNNIndex(factory, batch_size=7, **CPU).fit(x[:1000])
        inc.add(x[1000:])
        assert inc.ntotal == len(x)
        Dc, Ic = inc.search(q, 4)
        np.testing.assert_array_equal(Ic, Ia)
        np.testing.assert_allclose(Dc, Da, rtol=1e-5, atol=1e-5)


# --- exclude_self -------------------------------------------------------------------
def test_exclude_self(data):
    x, _ = data
    idx = KNNIndex("Flat", **CPU).fit(x)
    d2 = _sqdist(x, x)
    np.fill_diagonal(d2, np.inf)
    d2.sort(axis=1)
    np.testing.assert_allclose(idx.score(x, k=1, exclude_self=True), d2[:, 0], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(idx.score(x, k=3, agg="kth", exclude_self=True), d2[:, 2], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(idx.score(x, k=1), 0.0, atol=1e-3)  # without it: the point itself
    small = KNNIndex("Flat", **CPU).fit(x[:5])
    with pytest.raises(ValueError, match="exclude_self"):
        small.score(x[:5], k=5, exclude_self=True)
    assert small.score(x[:5], k=4, exclude_self=True).shape == (5,)


# --- errors ------------------------------------------------------------------------
def test_k_out_of_range(data):
    x, q = data
    idx = KNNIndex("Flat", **CPU).fit(x[:10])
    with pytest.raises(ValueError, match="k must be"):
        idx.search(q, k=11)
    with pytest.raises(ValueError, match="k must be"):
        idx.search(q, k=0)
    assert idx.search(q, k=10)[1].shape == (40, 10)


def test_wrong_query_dimension(data):
    x, _ = data
    idx = KNNIndex("Flat", **CPU).fit(x)
    with pytest.raises(ValueError, match="dimension 23 does not match the index dimension 24"):
        idx.search(_rand(3, 23), k=1)
    with pytest.raises(ValueError, match="2-D"):
        idx.search(x[0], k=1)
    with pytest.raises(ValueError, match="dimension"):
        idx.add(_rand(3, 25))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_vectors(data, bad):
    x, q = data
    xb = x.copy()
    xb[3, 5] = bad
    with pytest.raises(ValueError, match="NaN"):
        KNNIndex("Flat", **CPU).fit(xb)
    idx = KNNIndex("Flat", **CPU).fit(x)
    qb = q.copy()
    qb[0, 0] = bad
    with pytest.raises(ValueError, match="NaN"):
        idx.search(qb, k=1)
    with pytest.raises(ValueError, match="NaN"):
        idx.add(xb)


def test_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric 'manhattan'"):
        KNNIndex("Flat", metric="manhattan")


@pytest.mark.parametrize("factory", ["NotAnIndex", "PQ8x4zz", "IVF,PQ"])
def test_bad_factory(data, factory):
    x, _ = data
    with pytest.raises(ValueError) as err:
        KNNIndex(factory, **CPU).fit(x)
    assert repr(factory) in str(err.value)


def test_too_few_training_vectors():
    with pytest.raises(ValueError, match="IVF64,Flat"):
        KNNIndex("IVF64,Flat", **CPU).fit(_rand(20, 8))


def test_use_before_fit(data):
    _, q = data
    idx = KNNIndex("Flat", **CPU)
    assert idx.ntotal == 0
    with pytest.raises(RuntimeError, match="fit"):
        idx.search(q, k=1)
    with pytest.raises(RuntimeError, match="fit"):
        idx.score(q, k=1)
    with pytest.raises(RuntimeError, match="fit"):
        idx.add(q)
    with pytest.raises(RuntimeError):
        idx.bytes_per_vector
    with pytest.raises(RuntimeError, match="fit"):
        idx.to_bytes()


def test_fit_rejects_empty_or_1d():
    with pytest.raises(ValueError):
        KNNIndex("Flat", **CPU).fit(np.zeros((0, 8), np.float32))
    with pytest.raises(ValueError):
        KNNIndex("Flat", **CPU).fit(np.zeros(8, np.float32))


def test_float64_and_list_inputs(data):
    x, q = data
    a = KNNIndex("Flat", **CPU).fit(x.astype(np.float64))
    np.testing.assert_array_equal(a.search(q.tolist(), 2)[1], _brute_l2(x, q, 2)[1])


def test_ivf_nprobe_is_applied_and_saved():
    from noveltylab.knn import KNNIndex
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    idx = KNNIndex("IVF32,Flat", nprobe=32).fit(x)
    import faiss
    assert faiss.extract_index_ivf(idx.index).nprobe == 32
    arrays, meta = idx.state("k")
    back = KNNIndex.from_state(arrays, meta, "k")
    assert faiss.extract_index_ivf(back.index).nprobe == 32
    # visiting every list makes IVF exact
    D, I = idx.search(x[:50], 1)
    np.testing.assert_array_equal(I[:, 0], np.arange(50))
