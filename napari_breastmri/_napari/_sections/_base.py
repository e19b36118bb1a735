"""What every dock section shares: the dock, its state and viewer, and small Qt helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

if TYPE_CHECKING:
    from .._widget import BreastMRIWidget


class Section(QWidget):
    """A dock section; subclasses set ``title`` and build their widgets in ``build``."""

    title = "Section"

    def __init__(self, dock: BreastMRIWidget) -> None:
        super().__init__()
        self.dock = dock
        self.state = dock.state
        self.viewer = dock.viewer
        self.column = QVBoxLayout(self)
        self.column.setContentsMargins(2, 2, 2, 2)
        self.build()

    def build(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def label(self, text: str = "", *, wrap: bool = True, rich: bool = False) -> QLabel:
        lab = QLabel(text)
        lab.setWordWrap(wrap)
        if rich:
            lab.setTextFormat(1)  # Qt.RichText
        self.column.addWidget(lab)
        return lab

    def buttons(self, *specs: tuple[str, Any, str]) -> list[QPushButton]:
        """A row of buttons from (text, slot, tooltip)."""
        row = QHBoxLayout()
        made = []
        for text, slot, tip in specs:
            btn = QPushButton(text)
            btn.setToolTip(tip)
            btn.clicked.connect(lambda _=False, s=slot: s())
            row.addWidget(btn)
            made.append(btn)
        self.column.addLayout(row)
        return made
