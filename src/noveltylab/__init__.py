"""noveltylab: image novelty detection trained on normal images only.

Quick start::

    import noveltylab
    det = noveltylab.create("raw-nn", index="PQ32x4fs")
    det.fit(normal_images)            # uint8/float arrays, tensors, paths, folders
    scores = det.score(new_images)    # higher = more novel
    det.calibrate(held_out_normal, fpr=0.05)
    flags = det.predict(new_images)   # 1 = novel
    det.save("model/"); det = noveltylab.load("model/")
"""
import os as _os

# Idle OpenMP threads sleep instead of spinning: on shared or small machines spinning threads of
# torch and FAISS starve each other (FAISS training ran ~50x slower on two busy cores without this).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .detector import Detector, ModelFileError, NotFittedError, available, create, get_class, load, register
from .images import ImageError, as_images

__version__ = "0.1.0"
__all__ = ["Detector", "ImageError", "ModelFileError", "NotFittedError", "as_images", "available",
           "create", "get_class", "load", "register", "__version__"]
