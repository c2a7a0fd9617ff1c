"""Data sources (files -> ImageSet) and evaluation protocols (ImageSet -> Split)."""
from .base import ImageSet
from .protocols import (PROTOCOLS, Split, cap_per_class, leave_one_out, make_splits, one_class, outlier_fraction,
                        register_protocol)
from .sources import DATASETS, DatasetNotFoundError, dataset_status, default_data_dir, load_dataset

__all__ = ["DATASETS", "DatasetNotFoundError", "ImageSet", "PROTOCOLS", "Split", "cap_per_class",
           "dataset_status", "default_data_dir", "leave_one_out", "load_dataset", "make_splits",
           "one_class", "outlier_fraction", "register_protocol"]

# Protocol modules register themselves on import; import them here so every protocol is
# available as soon as noveltylab.data is, whichever method (if any) is used.
from . import corrupted, multiclass, near_nd  # noqa: E402,F401
from . import headct  # noqa: E402

headct.register()  # the Head CT hemorrhage source (data set name "head-ct")
from . import caltech  # noqa: E402

caltech.register()  # Caltech-256 source "caltech256" and paper 001's "caltech-clutter" protocol
