"""The HTML report of one analysed case: key images, kinetic curves, FTV, predictions, model cards.

``write_report(study, findings, out_dir, show_phi=False, truth=None) -> Path`` writes a
self-contained ``report.html`` (PNG figures embedded) and the same PNGs under ``key_images/``.
matplotlib is imported only when a report is drawn, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path


def write_report(*args: Any, **kwargs: Any) -> Path:
    """See :func:`napari_breastmri.report.html.write_report`."""
    from .html import write_report as _write

    return _write(*args, **kwargs)


__all__ = ["write_report"]
