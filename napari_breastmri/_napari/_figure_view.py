"""A matplotlib figure shown as pixels, drawn off the UI thread.

Why not matplotlib's ``FigureCanvasQTAgg``: it draws on the UI thread, on every resize and
every ``draw_idle``; the prediction bars take 0.1-0.5 s per draw on a software-rendered
desktop, and a finished run used to trigger three of them (result, dock re-layout, resize),
which was most of the run's longest UI stall. Here a draw function is rendered to an RGBA
array by :func:`._plots.render_rgba` (in a worker, or ahead of time by the run itself) and the
widget only paints a pixmap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from qtpy.QtCore import QSize, Qt, QTimer
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import QLabel, QSizePolicy

from . import _plots

DrawFn = Callable[[Any], None]
PREFERRED_WIDTH = 360  # px, as the 3.6 in matplotlib canvases it replaces


class FigureView(QLabel):
    """Shows one figure; ``.figure`` is the matplotlib Figure last rendered (for tests/exports)."""

    def __init__(self, height_in: float = 2.2, parent: Any = None) -> None:
        super().__init__(parent)
        self.setAlignment(Qt.AlignLeft | Qt.AlignTop)
        self.setMinimumHeight(int(height_in * 80))
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.setFixedHeight(int(height_in * 100))
        self.figure: Any = None
        self._draw: DrawFn | None = None
        self._rendered_width = 0
        self._job: Any = None
        self._pending = False
        self._resize_timer = QTimer(self)
        self._resize_timer.setSingleShot(True)
        self._resize_timer.setInterval(150)
        self._resize_timer.timeout.connect(self.render_async)

    def size_px(self) -> tuple[int, int, float]:
        """Pixel size to render at (the width the layout gives once shown, else the preferred
        width) and the device-pixel ratio."""
        width = self.width() if self.isVisible() else PREFERRED_WIDTH
        return (max(width, 200), self.height(), float(self.devicePixelRatioF()))

    def set_plot(self, draw: DrawFn, *, background: bool = False) -> None:
        """Show ``draw(fig)``; rendered now, or in a worker thread when ``background``."""
        self._draw = draw
        if background:
            self.render_async()
        else:
            w, h, dpr = self.size_px()
            self.show_rendered(draw, *_plots.render_rgba(draw, w, h, dpr), width=w)

    def show_rendered(self, draw: DrawFn, figure: Any, rgba: np.ndarray, *, width: int) -> None:
        """Show pixels rendered elsewhere (e.g. in the model run's worker) for ``draw``."""
        self._draw, self.figure, self._rendered_width = draw, figure, width
        rgba = np.ascontiguousarray(rgba)
        h, w = rgba.shape[:2]
        image = QImage(rgba.data, w, h, 4 * w, QImage.Format_RGBA8888).copy()
        pix = QPixmap.fromImage(image)
        pix.setDevicePixelRatio(self.devicePixelRatioF())
        self.setPixmap(pix)

    def render_async(self) -> None:
        """Re-render the current plot at the current size in a worker thread."""
        if self._draw is None:
            return
        if self._job is not None and self._job.running:
            self._pending = True
            return
        from ._worker import start

        draw = self._draw
        w, h, dpr = self.size_px()

        def factory(_should_cancel):
            return (yield from _render_gen(draw, w, h, dpr))

        def done(result: tuple[Any, np.ndarray]) -> None:
            if draw is self._draw:
                self.show_rendered(draw, *result, width=w)

        def finished(_job: Any) -> None:
            if self._pending:
                self._pending = False
                self.render_async()

        self._job = start(factory, on_result=done, on_finished=finished)

    def minimumSizeHint(self) -> QSize:
        # a QLabel's minimum is its pixmap: a render would then pin the dock's width
        return QSize(50, self.height())

    def sizeHint(self) -> QSize:
        # fixed, like matplotlib's canvas from its figure size: a hint that followed the last
        # render would widen the dock after every render
        return QSize(PREFERRED_WIDTH, self.height())

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        if self._draw is not None and abs(self.width() - self._rendered_width) > 8:
            self._resize_timer.start()


def _render_gen(draw: DrawFn, w: int, h: int, dpr: float):
    """A generator around :func:`_plots.render_rgba`, the shape the worker runs."""
    if False:  # pragma: no cover - makes this a generator that yields nothing
        yield None
    return _plots.render_rgba(draw, w, h, dpr)
