"""NLN: nearest-latent-neighbour scoring for five autoencoder families (paper 000).

See ``README.md`` in this folder and :mod:`.detectors` for the registered names.
"""
from .detectors import DETECTORS, NLNDetector, NLNPatchDetector  # noqa: F401
from .paper_settings import PAPER_SETTINGS, create_paper_setting, paper_setting  # noqa: F401
