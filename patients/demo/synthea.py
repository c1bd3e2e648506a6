"""Where the shipped Synthea patients lie and when they were exported (the demo moves their dates forward by the
days since, so a record reads as current). No Django import: the EHR example script reads them too."""

from datetime import date
from pathlib import Path

SYNTHEA_DIR = Path(__file__).resolve().parent.parent.parent / "demo_data" / "synthea_obgyn"
SYNTHEA_EXPORT_DATE = date(2021, 4, 7)


def days_since_export(today: date) -> int:
    return (today - SYNTHEA_EXPORT_DATE).days
