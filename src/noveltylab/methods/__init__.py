"""Every registered method. Importing this package registers them all.

Each method module lives here (or in a sub-folder) and registers its
detectors with ``@noveltylab.detector.register``; add new modules to the
import list below.
"""
from . import baselines  # noqa: F401
from . import connective  # noqa: F401
from . import nln  # noqa: F401
from . import inception_pq  # noqa: F401
from . import unode  # noqa: F401
from . import dn2, fitymi  # noqa: F401  (fitymi also registers the near-nd protocol)
from . import panda, msad, rotation  # noqa: F401  (paper 004 Table 1 baselines: PANDA, MSAD, GT, MHRot)
from . import patchcore, padim  # noqa: F401
