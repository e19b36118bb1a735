"""The dock's sections, in the order they appear (each in its own module)."""

from .display import DisplaySection
from .findings import FindingsSection
from .models import ModelsSection
from .predictions import PredictionsSection
from .study import StudySection

SECTION_CLASSES = [
    StudySection,
    DisplaySection,
    ModelsSection,
    FindingsSection,
    PredictionsSection,
]
