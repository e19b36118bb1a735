"""Drive the core's progress generators.

Core computations are generators that ``yield`` :class:`~napari_breastmri.types.Progress` and
``return`` their result (stardist-napari's model): napari's ``thread_worker`` turns the yields
into a progress bar and can stop between them; the CLI turns them into a terminal bar. This
module holds the headless drivers so that no caller re-implements ``StopIteration.value``.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

from .types import Progress

T = TypeVar("T")
ProgressGen = Generator[Progress, None, T]


def run(gen: ProgressGen[T], on_progress: Callable[[Progress], Any] | None = None) -> T:
    """Exhaust ``gen``, passing each Progress to ``on_progress``; return the generator's value."""
    while True:
        try:
            step = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(step)


def scaled(gen: ProgressGen[T], start: float, stop: float) -> ProgressGen[T]:
    """Re-yield a sub-generator's progress mapped into [start, stop] of a parent's range."""
    while True:
        try:
            step = next(gen)
        except StopIteration as done:
            return done.value
        yield Progress(step.step, start + (stop - start) * step.fraction, step.message)


def tqdm_printer(desc: str = "") -> Callable[[Progress], None]:
    """A terminal progress callback (tqdm on stderr) for the CLI."""
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=desc, unit="", bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}")

    def update(step: Progress) -> None:
        target = int(round(1000 * min(max(step.fraction, 0.0), 1.0)))
        bar.update(max(0, target - bar.n))
        bar.set_postfix_str(f"{step.step}: {step.message}"[:60], refresh=False)
        if target >= 1000:
            bar.close()

    return update
