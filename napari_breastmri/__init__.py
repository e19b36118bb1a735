"""napari-breastmri: reading breast DCE-MRI with deep-learning help, in napari and headless.

Importing the package is cheap on purpose (no torch, monai, napari or Qt): the npe2 manifest and
the CLI import what they need lazily. Start with :func:`napari_breastmri.io.load_study`.
"""

from .types import DEMO_LABEL, Findings, Lesion, Study

__version__ = "0.1.0"
__all__ = ["DEMO_LABEL", "Findings", "Lesion", "Study", "__version__"]
