"""One exception family for everything napari-breastmri raises on purpose.

Why a family: the viewer shows any ``BreastMRIError`` as a notification and the CLI turns it into
one line on stderr and a non-zero exit, while anything else is a bug and keeps its traceback.
Messages are one or two sentences: what is wrong, where, and what the user can do about it.
"""

from __future__ import annotations


class BreastMRIError(Exception):
    """Base class: an expected failure whose message is meant for the user."""


class UnsupportedInput(BreastMRIError):
    """The source is not something we know how to read (not DICOM/NIfTI/a known layout)."""


class CorruptFile(BreastMRIError):
    """A file we do handle is truncated or unreadable."""


class InconsistentGeometry(BreastMRIError):
    """Slices or phases do not form one regular grid (spacing, orientation, duplicates)."""


class MissingGeometry(InconsistentGeometry):
    """Image files lack the tags that place them in space (position, orientation, pixel size)."""


class MissingSlices(InconsistentGeometry):
    """A series has gaps: some slice positions of an otherwise regular stack are absent."""


class UnequalSpacing(InconsistentGeometry):
    """Slices are not equally spaced, so they do not form one voxel grid."""


class DuplicatePositions(InconsistentGeometry):
    """Several different images sit at the same position and nothing tells them apart."""


class MissingPhases(BreastMRIError):
    """The study lacks phases a computation or a model needs (e.g. no post-contrast phase)."""


class MixedStudies(BreastMRIError):
    """Files from more than one study (StudyInstanceUID) were given as one case."""


class KineticsError(BreastMRIError):
    """Kinetic analysis cannot be done on this input (bad times, non-positive baseline ...)."""


class ModelPackageError(BreastMRIError):
    """A model package is malformed: bad card, missing or unsafe weights."""


class ModelVerificationError(ModelPackageError):
    """A model package's weights do not match the sha256 recorded in its card."""


class IncompatibleModel(ModelPackageError):
    """A valid model package that cannot run on this study (phases, channels, task)."""


class Cancelled(BreastMRIError):
    """The user cancelled a running computation; nothing partial was kept."""


class ExportError(BreastMRIError):
    """Findings could not be exported (nothing half-written is left behind)."""


class StudySourceUnavailable(ExportError):
    """The study a findings.json was made from cannot be reloaded (not recorded, moved, unreachable)."""


class PACSError(BreastMRIError):
    """The DICOMweb server is unreachable or answered with an error."""


class AnnotationError(BreastMRIError):
    """An annotation store cannot be read or does not belong to this study."""
