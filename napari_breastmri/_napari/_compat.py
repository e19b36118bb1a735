"""Keep torch's optional imports from crashing a running viewer.

Found the hard way (tests/gui/test_gui_explain.py): once napari has an OpenGL context (Mesa's
llvmpipe under Xvfb loads its own LLVM), importing ``triton`` - which torchvision and
``torch._dynamo`` try on first import, and which pytorch-grad-cam and MONAI pull in - segfaults
the process, in any thread. Importing torch and torchvision *before* the viewer is fine (that is
what ``breastmri view`` does). When the plugin is opened inside an already running napari, the
dock calls :func:`guard_torch_imports`, which marks triton as absent: torch then treats it as not
installed (it is only used by ``torch.compile`` kernels, which this project never uses).
"""

from __future__ import annotations

import sys


def guard_torch_imports() -> bool:
    """Block a not-yet-imported triton; returns True when it did (False: already loaded/blocked)."""
    if "triton" in sys.modules:
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]  (import triton -> ImportError)
    return True


def preload_before_viewer() -> None:
    """Import torch and torchvision (and so triton, when installed) before any viewer exists."""
    import contextlib

    import torch  # noqa: F401

    with contextlib.suppress(ImportError):  # torchvision is optional for the viewer itself
        import torchvision  # noqa: F401
