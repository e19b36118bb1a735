"""The dock's sections, in the order they appear (each in its own module)."""

from .corrections import CorrectionsSection
from .display import DisplaySection
from .explain import ExplainSection
from .export import ExportSection
from .findings import FindingsSection
from .kinetics import KineticsSection
from .models import ModelsSection
from .pacs import PacsSection
from .predictions import PredictionsSection
from .study import StudySection
from .teaching import TeachingSection

SECTION_CLASSES = [
    StudySection,
    DisplaySection,
    ModelsSection,
    FindingsSection,
    PredictionsSection,
    KineticsSection,
    ExplainSection,
    CorrectionsSection,
    TeachingSection,
    PacsSection,
    ExportSection,
]
