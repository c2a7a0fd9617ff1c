"""Nearest-neighbour search over FAISS, named by index-factory strings.

One module used by every distance-based method: exact search (``"Flat"``),
product quantization (``"PQ32x4"``, fast-scan ``"PQ32x4fs"``), inverted files
(``"IVF256,PQ32"``) and anything else ``faiss.index_factory`` accepts.

Vectors whose dimension does not divide by the number of PQ sub-quantizers
are zero-padded, which leaves every L2 distance unchanged. Distances returned
by :meth:`KNNIndex.search` are *squared* L2 for ``metric="l2"`` (FAISS's
convention) and similarities for ``"ip"``/``"cosine"``.
"""
from __future__ import annotations

import re
from typing import Literal

import faiss
import numpy as np

Aggregation = Literal["kth", "mean", "sum", "sumsq", "max"]
AGGREGATIONS = ("kth", "mean", "sum", "sumsq", "max")


def _pq_multiple(factory: str) -> int:
    """Dimension multiple the factory string requires (sub-quantizers of PQ/OPQ), else 1."""
    m = 1
    for num in re.findall(r"PQ(\d+)", factory):
        m = int(np.lcm(m, int(num)))
    return m


def has_gpu() -> bool:
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class _BoundedReader:
    """FAISS read callback over an in-memory blob that refuses any 8-byte length field claiming more
    elements than bytes remain, before FAISS allocates a vector of that length."""

    _FAISS_DUMMY = 1 << 20  # IndexFlat writes two placeholder int64 fields of this value

    def __init__(self, blob: bytes) -> None:
        self.blob, self.pos, self.bad = memoryview(blob), 0, None

    def __call__(self, n: int) -> bytes:
        if self.bad is not None:
            return b""
        remaining = len(self.blob) - self.pos
        if n == 8 and remaining >= 8:
            v = int.from_bytes(self.blob[self.pos:self.pos + 8], "little")
            if remaining - 8 < v < (1 << 40) and v != self._FAISS_DUMMY:
                self.bad = (self.pos, v)
                return b""
        out = bytes(self.blob[self.pos:self.pos + n])
        self.pos += len(out)
        return out


def read_index_bounded(blob: np.ndarray) -> faiss.Index:
    """Deserialise a FAISS index from ``blob`` without trusting its length fields: a field claiming
    more data than the blob holds, or any FAISS read error / MemoryError, is a ``ValueError``."""
    reader = _BoundedReader(np.ascontiguousarray(blob, dtype=np.uint8).tobytes())
    try:
        index = faiss.read_index(faiss.PyCallbackIOReader(reader))
    except (RuntimeError, MemoryError) as exc:
        if reader.bad is not None:
            pos, v = reader.bad
            raise ValueError(f"corrupt FAISS index data: a length field at byte {pos} claims {v} elements "
                             f"but the blob has only {len(blob)} bytes") from None
        raise ValueError(f"corrupt FAISS index data: {(str(exc).splitlines() or [type(exc).__name__])[-1]}") from None
    if reader.pos != len(blob):
        raise ValueError(f"corrupt FAISS index data: {len(blob) - reader.pos} unexpected bytes after the index")
    return index


class KNNIndex:
    """k-nearest-neighbour index over float32 vectors.

    ``factory``: FAISS index-factory string. ``metric``: ``"l2"`` (squared
    Euclidean), ``"ip"`` (inner product) or ``"cosine"`` (vectors are
    L2-normalised, inner product). ``gpu``: use a FAISS GPU when one exists
    (``"auto"``), never (``False``) or require one (``True``). ``train_size``:
    when set and smaller than the number of vectors given to :meth:`fit`, train
    the structure on that many vectors drawn at random (seeded by ``seed``)
    instead of on all of them; every vector is still added.
    """

    def __init__(self, factory: str = "Flat", metric: str = "l2", gpu: bool | str = "auto",
                 batch_size: int = 65536, seed: int = 0, train_size: int | None = None,
                 nprobe: int = 8) -> None:
        if metric not in ("l2", "ip", "cosine"):
            raise ValueError(f"unknown metric {metric!r}; use 'l2', 'ip' or 'cosine'")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
        if train_size is not None and int(train_size) < 1:
            raise ValueError(f"train_size must be a positive integer or None, got {train_size}")
        self.factory = factory
        self.metric = metric
        self.gpu = gpu
        self.batch_size = batch_size
        self.seed = seed
        self.train_size = None if train_size is None else int(train_size)
        if int(nprobe) < 1:
            raise ValueError(f"nprobe must be a positive integer, got {nprobe}")
        self.nprobe = int(nprobe)
        self.index: faiss.Index | None = None
        self.dim: int | None = None

    # --- building -----------------------------------------------------------
    def _prep(self, x: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"{what}: expected a 2-D array (n, d), got shape {x.shape}")
        if self.dim is not None and x.shape[1] != self.dim:
            raise ValueError(f"{what}: dimension {x.shape[1]} does not match the index dimension {self.dim}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{what}: vectors contain NaN or infinite values")
        if self.metric == "cosine":
            x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        pad = self._padded_dim - x.shape[1]
        if pad:
            x = np.concatenate([x, np.zeros((x.shape[0], pad), np.float32)], axis=1)
        return np.ascontiguousarray(x)

    @property
    def _padded_dim(self) -> int:
        assert self.dim is not None
        m = _pq_multiple(self.factory)
        return -(-self.dim // m) * m

    def fit(self, vectors: np.ndarray) -> "KNNIndex":
        """Create the index, train it when the structure needs training, and add ``vectors``."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] == 0:
            raise ValueError(f"KNNIndex.fit: need a non-empty (n, d) array, got shape {vectors.shape}")
        self.dim = int(vectors.shape[1])
        fmetric = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        try:
            index = faiss.index_factory(self._padded_dim, self.factory, fmetric)
        except RuntimeError as exc:
            raise ValueError(f"FAISS cannot build index {self.factory!r} for dimension {self.dim}: "
                             f"{str(exc).splitlines()[-1] if str(exc) else exc}") from None
        x = self._prep(vectors, "training vectors")
        if not index.is_trained:
            self._set_train_seed(index)
            self._skip_polysemous_training(index)
            xt = x
            if self.train_size is not None and self.train_size < x.shape[0]:
                rng = np.random.default_rng(self.seed)
                xt = x[np.sort(rng.choice(x.shape[0], self.train_size, replace=False))]
            try:
                index.train(xt)
            except RuntimeError as exc:
                raise ValueError(f"FAISS cannot train index {self.factory!r} on {xt.shape[0]} vectors "
                                 f"(fewer than its number of centroids?): "
                                 f"{str(exc).splitlines()[-1] if str(exc) else exc}") from None
        self.index = self._maybe_gpu(index)
        self._apply_nprobe()
        self.add(vectors, _prepped=x)
        return self

    def _set_train_seed(self, index: faiss.Index) -> None:
        """Seed every k-means FAISS runs in training (repeatable runs) and silence its
        "please provide at least N training points" warning for small training sets."""
        subs = [index]
        ivf = faiss.try_extract_index_ivf(index) if hasattr(faiss, "try_extract_index_ivf") else None
        if ivf is not None:
            subs.append(ivf)
        for obj in subs:
            for attr in ("cp", "pq"):
                sub = getattr(obj, attr, None)
                cp = getattr(sub, "cp", sub) if sub is not None else None
                if cp is not None and hasattr(cp, "seed"):
                    cp.seed = self.seed
                    cp.min_points_per_centroid = 1

    @staticmethod
    def _skip_polysemous_training(index: faiss.Index) -> None:
        """The factory turns on polysemous training for 8-bit PQ (``"PQ16"``, ``"IVF256,PQ16"``):
        a simulated-annealing pass that only reorders centroids for Hamming-distance
        filtering, which searches here never use (distances are identical either way).
        It costs tens of seconds per fit whatever the data size, so switch it off."""
        objs = [index]
        if isinstance(index, faiss.IndexPreTransform):  # e.g. "OPQ16,PQ16"
            objs.append(faiss.downcast_index(index.index))
        if hasattr(faiss, "try_extract_index_ivf"):
            objs.append(faiss.try_extract_index_ivf(index))
        for obj in objs:
            if obj is not None and getattr(obj, "do_polysemous_training", False):
                obj.do_polysemous_training = False

    def _apply_nprobe(self) -> None:
        """IVF structures search ``nprobe`` inverted lists (FAISS's default of 1 gives poor recall)."""
        ivf = faiss.try_extract_index_ivf(self.index) if hasattr(faiss, "try_extract_index_ivf") else None
        if ivf is not None:
            ivf.nprobe = min(self.nprobe, ivf.nlist)

    def _maybe_gpu(self, index: faiss.Index) -> faiss.Index:
        want = self.gpu
        if want is False or (want == "auto" and not has_gpu()):
            return index
        if not has_gpu():
            raise RuntimeError("gpu=True but this FAISS build has no GPU support or no GPU is visible")
        try:
            self._res = faiss.StandardGpuResources()
            return faiss.index_cpu_to_gpu(self._res, 0, index)
        except RuntimeError:
            if want is True:
                raise
            return index  # structure without a GPU implementation (e.g. fast-scan): stay on CPU

    def add(self, vectors: np.ndarray, _prepped: np.ndarray | None = None) -> None:
        """Add vectors in batches (``batch_size``) to a fitted index."""
        if self.index is None:
            raise RuntimeError("KNNIndex.add: call fit() first (it trains and adds the first vectors)")
        x = _prepped if _prepped is not None else self._prep(vectors, "vectors")
        for i in range(0, x.shape[0], self.batch_size):
            self.index.add(x[i:i + self.batch_size])

    # --- querying -------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(distances, indices), each ``(n, k)``, nearest first; squared L2 or similarities."""
        if self.index is None:
            raise RuntimeError("KNNIndex.search: the index is empty; call fit() first")
        if not 1 <= k <= self.ntotal:
            raise ValueError(f"k must be between 1 and the number of stored vectors ({self.ntotal}), got {k}")
        q = self._prep(queries, "query vectors")
        D = np.empty((q.shape[0], k), np.float32)
        I = np.empty((q.shape[0], k), np.int64)
        for i in range(0, q.shape[0], self.batch_size):
            D[i:i + self.batch_size], I[i:i + self.batch_size] = self.index.search(q[i:i + self.batch_size], k)
        if self.metric == "l2":
            np.maximum(D, 0, out=D)  # quantized distances can dip below zero
        return D, I

    def score(self, queries: np.ndarray, k: int = 1, agg: Aggregation = "kth", exclude_self: bool = False) -> np.ndarray:
        """Aggregate the ``k`` nearest distances into one score per query.

        For ``metric="l2"``: ``kth`` = squared distance to the k-th neighbour,
        ``sumsq`` = sum of squared distances, ``mean``/``sum`` = mean/sum of
        Euclidean distances, ``max`` = largest squared distance. For
        similarity metrics the same aggregations apply to similarities.
        ``exclude_self`` drops the first neighbour (scoring the stored set itself).
        """
        if agg not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {agg!r}; use one of {AGGREGATIONS}")
        if exclude_self and k + 1 > self.ntotal:
            raise ValueError(f"exclude_self needs k + 1 <= the number of stored vectors ({self.ntotal}), got k={k}")
        D, _ = self.search(queries, k + int(exclude_self))
        if exclude_self:
            D = D[:, 1:]
        if agg == "kth":
            return D[:, -1].astype(np.float64)
        if agg == "sumsq":
            return D.sum(1, dtype=np.float64) if self.metric == "l2" else (D.astype(np.float64) ** 2).sum(1)
        if agg == "max":
            return D.max(1).astype(np.float64)
        E = np.sqrt(D.astype(np.float64)) if self.metric == "l2" else D.astype(np.float64)
        return E.mean(1) if agg == "mean" else E.sum(1)

    @property
    def bytes_per_vector(self) -> float:
        """Storage per vector: the code size for quantized indexes, 4*d for flat ones.

        For inverted-file indexes this is the code kept in the inverted lists
        (``m*bits/8`` for ``IVF...,PQmxbits``): not the list number, which the
        list itself implies, nor the 8-byte id FAISS stores beside each code.
        """
        if self.index is None:
            raise RuntimeError("bytes_per_vector: index not built")
        cpu = self._cpu_index()
        while isinstance(cpu, faiss.IndexPreTransform):  # "OPQ16,PQ16", "PCA64,Flat"
            cpu = faiss.downcast_index(cpu.index)
        code_size = getattr(cpu, "code_size", None)
        if isinstance(code_size, (int, np.integer)) and code_size > 0:
            return float(code_size)
        try:
            return float(cpu.sa_code_size())
        except RuntimeError:
            return float(self._padded_dim * 4)

    # --- persistence ----------------------------------------------------------
    def _cpu_index(self) -> faiss.Index:
        if self.index is None:
            raise RuntimeError("KNNIndex: the index is not built; call fit() first")
        if has_gpu() and hasattr(faiss, "index_gpu_to_cpu"):
            try:
                return faiss.index_gpu_to_cpu(self.index)
            except (RuntimeError, AttributeError):
                return self.index
        return self.index

    def to_bytes(self) -> np.ndarray:
        """The index in FAISS's own binary format, as a uint8 array (storable in safetensors)."""
        return faiss.serialize_index(self._cpu_index())

    @classmethod
    def from_bytes(cls, data: np.ndarray, dim: int, factory: str, metric: str = "l2",
                   gpu: bool | str = "auto", nprobe: int = 8) -> "KNNIndex":
        """Rebuild an index written by :meth:`to_bytes` (FAISS format: no pickling)."""
        obj = cls(factory=factory, metric=metric, gpu=gpu, nprobe=nprobe)
        obj.dim = int(dim)
        index = read_index_bounded(np.asarray(data, dtype=np.uint8).reshape(-1))
        if index.d != obj._padded_dim:
            raise ValueError(f"stored index has dimension {index.d}, expected {obj._padded_dim}")
        obj.index = obj._maybe_gpu(index)
        obj._apply_nprobe()
        return obj

    def save(self, path: str) -> None:
        """Write the index to a file in FAISS format, with its settings in a JSON side file."""
        import json

        faiss.write_index(self._cpu_index(), str(path))
        with open(str(path) + ".json", "w") as f:
            json.dump({"dim": self.dim, "factory": self.factory, "metric": self.metric, "nprobe": self.nprobe}, f)

    @classmethod
    def load(cls, path: str, gpu: bool | str = "auto") -> "KNNIndex":
        import json

        with open(str(path) + ".json") as f:
            cfg = json.load(f)
        data = np.fromfile(str(path), dtype=np.uint8)
        return cls.from_bytes(data, cfg["dim"], cfg["factory"], cfg["metric"], gpu=gpu,
                              nprobe=cfg.get("nprobe", 8))

    def state(self, prefix: str = "knn") -> tuple[dict[str, np.ndarray], dict]:
        """(arrays, JSON meta) for a detector's ``_state``/``_meta``."""
        return {f"{prefix}.index": self.to_bytes()}, {"dim": self.dim, "factory": self.factory, "metric": self.metric,
                                                    "nprobe": self.nprobe}

    @classmethod
    def from_state(cls, state: dict, meta: dict, prefix: str = "knn") -> "KNNIndex":
        data = state[f"{prefix}.index"]
        data = data.numpy() if hasattr(data, "numpy") else data
        return cls.from_bytes(data, meta["dim"], meta["factory"], meta["metric"], nprobe=meta.get("nprobe", 8))
