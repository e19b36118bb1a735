"""Headless annotation core: editable lesions and masks with provenance, undo, autosave, restore.

Why its own package: the viewer's correction tools, the export code and the fine-tuning code all
need the same record of who changed what, and it must work (and be tested) without a display.
Typical use::

    store = AnnotationStore(default_root(case_path), study.study_uid)
    session = AnnotationSession.restore(store, study.shape, study.affine)  # None if nothing saved
    session = session or AnnotationSession.for_study(study, findings, store=store)
    session.accept(1); session.add_box([z0, y0, x0, z1, y1, x1]); session.undo()
    findings = session.to_findings()
    session.close()
"""

from .session import HUMAN, AnnotationSession, Edit
from .store import AnnotationStore, SavedState, default_root, study_key

__all__ = ["HUMAN", "AnnotationSession", "AnnotationStore", "Edit", "SavedState", "default_root", "study_key"]
