"""The in-memory data set every source returns and every protocol consumes."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageSet:
    """Images with integer class labels.

    ``images`` is uint8 ``(N, H, W, C)``; ``labels`` int64 ``(N,)`` indexes
    ``class_names``; ``masks`` (optional) is uint8 ``(N, H, W)`` with 1 on
    anomalous pixels (MVTec-AD style ground truth).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    masks: np.ndarray | None = None
    name: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim == 3:
            self.images = self.images[..., None]
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"ImageSet.images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}")
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.labels) != len(self.images):
            raise ValueError(f"ImageSet: {len(self.images)} images but {len(self.labels)} labels")
        if self.masks is not None and self.masks.shape[:3] != self.images.shape[:3]:
            raise ValueError(f"ImageSet: masks {self.masks.shape} do not match images {self.images.shape}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: np.ndarray) -> "ImageSet":
        """A new ImageSet holding the items at ``index`` (boolean mask or integer indices)."""
        n = len(self.images)
        extra = {}
        for k, v in self.extra.items():  # per-image lists (file names, ...) follow the images
            if isinstance(v, np.ndarray) and len(v) == n:
                extra[k] = v[index]
            elif isinstance(v, list) and len(v) == n:
                extra[k] = list(np.asarray(v, dtype=object)[index])
            else:
                extra[k] = v
        return ImageSet(self.images[index], self.labels[index], list(self.class_names),
                        None if self.masks is None else self.masks[index], self.name, extra)

    def class_index(self, cls: int | str) -> int:
        """Resolve a class given by index or by name; raise a clear error if it does not exist."""
        if isinstance(cls, str) and not cls.lstrip("-").isdigit():
            if cls not in self.class_names:
                raise KeyError(f"class {cls!r} not in {self.name or 'data set'}; classes: {self.class_names}")
            return self.class_names.index(cls)
        i = int(cls)
        if not 0 <= i < self.num_classes:
            raise KeyError(f"class {i} does not exist in {self.name or 'data set'} "
                           f"(classes 0..{self.num_classes - 1}: {self.class_names})")
        return i
