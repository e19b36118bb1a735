"""Synthetic breast DCE-MRI phantom with ground truth (synthetic demo - not for clinical use).

Why the project makes its own data: no real breast DCE-MRI and no trained weights can be shipped,
so every model, kinetic map and explanation is tested against cases whose truth is known. The
physics is the kinetics package's forward model; the case labels follow INVENTED correlates that
docs/phantom.md states. ``generate_case`` builds one exam in memory; ``write_case`` and
``write_cohort`` write DICOM, NIfTI and truth files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["DEMO_SEED", "PhantomCase", "generate_case", "write_case", "write_cohort"]

#: The embedded demo case: `breastmri analyze --demo`, `breastmri explain --demo`, `breastmri view
#: --demo`, the dock's "Demo case" button and napari's sample data all open this seed. Seed 5 is
#: the first seed whose case holds an invasive cancer with positive nodes and a complete response,
#: so every demo model has a truth to be compared with (seed 0 had no lesion at all). It is not a
#: training or held-out seed (those start at 10 000).
DEMO_SEED = 5

if TYPE_CHECKING:  # pragma: no cover
    from .case import PhantomCase, generate_case
    from .write import write_case, write_cohort


def __getattr__(name: str) -> Any:
    """Lazy exports: importing the package stays cheap (scipy loads on first use)."""
    if name in ("PhantomCase", "generate_case"):
        from . import case

        return getattr(case, name)
    if name in ("write_case", "write_cohort"):
        from . import write

        return getattr(write, name)
    raise AttributeError(name)
