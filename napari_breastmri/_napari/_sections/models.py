"""Models section: choose packages from the registry, see the device, Run / Cancel with progress.

The run is :func:`napari_breastmri.inference.pipeline.analyze` in a thread worker; the bar shows
the step and an estimate of the time left; Cancel stops it (the pipeline polls should_cancel
between windows) and nothing is added to the viewer unless the run finished.
"""

from __future__ import annotations

import time
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog, QListWidget, QListWidgetItem, QProgressBar

from ...types import DEMO_LABEL, Findings, Progress
from .._layers import prepare_results
from ._base import Section
from .predictions import PredictionsSection


def package_label(info: Any) -> str:
    """'name v1.0 - detect/lesion [synthetic demo - not for clinical use]' (pure)."""
    demo = f"  [{DEMO_LABEL}]" if getattr(info, "demo", False) else ""
    return f"{info.name} v{info.version} - {info.task}/{info.target}{demo}"


class ModelsSection(Section):
    title = "Models"

    def build(self) -> None:
        self.listing = QListWidget()
        self.listing.setMaximumHeight(130)
        self.listing.setToolTip(
            "Tick the model packages to run; demo models are trained on the synthetic phantom"
        )
        self.column.addWidget(self.listing)
        self.device_label = self.label("Device: -")
        self.run_btn, self.cancel_btn, self.add_btn = self.buttons(
            ("Run", self.run, "Run the ticked models on this study (in the background)"),
            ("Cancel", self.cancel, "Stop the run; nothing half-made is added"),
            ("Add model...", self.add_package, "Add a model package (folder or .zip) to your user folder"),
        )
        self.cancel_btn.setEnabled(False)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.column.addWidget(self.bar)
        self.step_label = self.label("")
        self.job: Any = None
        self.last_run_seconds: float | None = None
        self.refresh()

    def refresh(self) -> None:
        """List the registry's packages (user first, then shipped); demo packages ticked."""
        self.listing.clear()
        try:
            from ...models import registry

            infos = registry.available()
        except Exception as exc:  # the registry is optional at this point: show why it is empty
            infos = []
            self.step_label.setText(f"No model registry: {exc}")
        for info in infos:
            item = QListWidgetItem(package_label(info))
            item.setData(Qt.UserRole, info)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            item.setCheckState(Qt.Checked if info.demo else Qt.Unchecked)
            item.setToolTip(f"{info.path} ({info.origin})")
            self.listing.addItem(item)
        self.device_label.setText(f"Device: {self._device_name()}")

    def _device_name(self) -> str:
        try:
            from ...inference.device import pick_device

            return str(pick_device())
        except Exception:  # no torch or no device module yet: the pipeline will say
            return "cpu (default)"

    def chosen(self) -> list[Any]:
        out = []
        for i in range(self.listing.count()):
            item = self.listing.item(i)
            if item.checkState() == Qt.Checked:
                out.append(item.data(Qt.UserRole))
        return out

    def set_chosen(self, names: list[str]) -> None:
        for i in range(self.listing.count()):
            item = self.listing.item(i)
            item.setCheckState(Qt.Checked if item.data(Qt.UserRole).name in names else Qt.Unchecked)

    # ----- running --------------------------------------------------------------------------
    def run(self) -> Any:
        from .._worker import ProgressClock, start

        study = self.state.study
        if study is None:
            self.dock.show_error(ValueError("Open a study first."))
            return None
        infos = self.chosen()
        if not infos:
            self.step_label.setText("Tick at least one model.")
            return None
        follow_up = study.meta.get("follow_up_study")
        clock = ProgressClock()
        started = time.monotonic()
        bars_size = self.dock.sections["Predictions"].canvas.size_px()

        def factory(should_cancel):
            from ...inference.pipeline import analyze
            from ...models.package import load_package

            packages = [load_package(info.path) for info in infos]
            findings = yield from analyze(study, packages, follow_up=follow_up, should_cancel=should_cancel)
            # everything the viewer shows is made here, off the UI thread: layer data and the
            # prediction bars' pixels; the UI thread then only writes them in, in small steps
            yield Progress("display", 1.0, "preparing the layers")
            return findings, prepare_results(findings), PredictionsSection.prerender(findings, bars_size)

        def progress(step: Progress) -> None:
            self.bar.setValue(int(1000 * min(max(step.fraction, 0.0), 1.0)))
            self.step_label.setText(clock.text(step))

        def done(result: tuple[Findings, Any, Any]) -> None:
            findings, prepared, bars = result
            self.last_run_seconds = time.monotonic() - started
            self.bar.setValue(1000)
            device = f" on {findings.device}" if findings.device else ""
            self.step_label.setText(
                f"Done in {self.last_run_seconds:.1f} s{device}: {len(findings.lesions)} lesion(s)."
            )
            self.dock.sections["Predictions"].use_prerendered(bars)
            self.dock.set_findings(findings, prebuilt=prepared)

        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.bar.setValue(0)
        self.step_label.setText("Starting ...")
        self.job = start(
            factory,
            on_progress=progress,
            on_result=done,
            on_error=self._failed,
            on_cancelled=self._cancelled,
            on_finished=self._finished,
        )
        self.dock.jobs.append(self.job)
        return self.job

    def cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.step_label.setText("Cancelling ...")
            self.job.cancel()

    def _cancelled(self) -> None:
        self.bar.setValue(0)
        self.step_label.setText("Cancelled; nothing was added.")

    def _failed(self, exc: BaseException) -> None:
        self.bar.setValue(0)
        self.step_label.setText("The run failed (see the notification).")
        self.dock.show_error(exc)

    def _finished(self, _job: Any) -> None:
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)

    def add_package(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Model package folder (or cancel to pick a .zip)")
        if not path:
            path, _ = QFileDialog.getOpenFileName(self, "Model package .zip", "", "Model package (*.zip)")
        if not path:
            return
        try:
            from ...models import registry

            registry.add(path)
        except Exception as exc:
            self.dock.show_error(exc)
        self.refresh()
