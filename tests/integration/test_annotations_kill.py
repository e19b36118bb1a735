"""A real process making annotation edits is killed with SIGKILL; its work is restored.

The child journals every edit before it reports it on stdout, so every edit the parent saw
reported must come back; the restored state must equal a replay of exactly that many edits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from napari_breastmri.annotations import AnnotationSession, AnnotationStore

SHAPE = (8, 24, 24)
UID = "2.25.99887766"

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from napari_breastmri.annotations import AnnotationSession, AnnotationStore

    SHAPE = (8, 24, 24)

    def edit(s, i):
        k = i % 4
        if k == 0:
            s.add_box([i % 6, 1, 1, i % 6 + 2, 5 + i % 9, 5 + i % 7])
        elif k == 1:
            s.paint([i % 7, i % 20, 0, i % 7 + 1, i % 20 + 3, 4], 1 + i % 3)
        elif k == 2:
            s.accept(max(les.id for les in s.lesions))
        else:
            s.set_box(max(les.id for les in s.lesions), [0, 0, 0, 2, 2 + i % 5, 3])

    if __name__ == "__main__":
        root = sys.argv[1]
        s = AnnotationSession("2.25.99887766", SHAPE, np.eye(4), store=AnnotationStore(root, "2.25.99887766"),
                              autosave_s=0.5)
        i = 0
        while True:
            edit(s, i)
            i += 1
            print(f"edit {len(s.history)}", flush=True)  # reported only after it was journaled
            time.sleep(0.01)
    """
)


def _expected(n_edits: int) -> AnnotationSession:
    """The same edit sequence, in memory, stopped after ``n_edits`` recorded edits."""
    namespace: dict = {"__name__": "child"}
    exec(compile(CHILD, "child.py", "exec"), namespace)
    s = AnnotationSession(UID, SHAPE, np.eye(4), store=None)
    i = 0
    while len(s.history) < n_edits:
        namespace["edit"](s, i)
        i += 1
    assert len(s.history) == n_edits
    return s


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_sigkill_loses_nothing_reported(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    root = tmp_path / "store"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(root)], stdout=subprocess.PIPE, text=True, env=env
    )
    reported = 0
    start = time.time()
    try:
        # run long enough for several background snapshots (0.5 s) plus a journal tail
        while time.time() - start < 60:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            reported = int(line.split()[1])
            if reported >= 150 and time.time() - start > 2.5:
                break
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert reported >= 150

    store = AnnotationStore(root, UID)
    saved = store.load()
    assert saved is not None and saved.snapshot is not None and saved.snapshot["seq"] > 0  # autosave ran
    restored = AnnotationSession.restore(store, SHAPE, np.eye(4), autosave_s=0)
    assert restored is not None
    n = len(restored.history)
    assert n >= reported, f"lost edits: {reported} reported, {n} restored"
    assert n <= reported + 1  # at most the edit in flight when killed
    expected = _expected(n).to_findings(include_rejected=True)
    got = restored.to_findings(include_rejected=True)
    assert [les.bbox for les in got.lesions] == [les.bbox for les in expected.lesions]
    assert [les.status for les in got.lesions] == [les.status for les in expected.lesions]
    np.testing.assert_array_equal(got.label_mask, expected.label_mask)
    # and the restored session keeps working and saving
    restored.add_box([0, 0, 0, 1, 1, 1])
    restored.close()
    again = AnnotationSession.restore(AnnotationStore(root, UID), SHAPE, np.eye(4), autosave_s=0)
    assert again is not None and len(again.lesions) == len(got.lesions) + 1
