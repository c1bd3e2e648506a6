"""Measurements over gestational age, for the patient page's charts. No Django import.

The pregnancy is given by how many days before the consultation it started (and ended, if it
did); each reading is placed at its gestational week. Units are converted to one per chart.
"""

from __future__ import annotations

from . import codes
from .history import PatientHistory
from .units import to_g_dl, to_kg, to_mm_hg

CHARTS = {
    "blood_pressure": (
        "Blood pressure",
        "mmHg",
        [("systolic", codes.SYSTOLIC, to_mm_hg), ("diastolic", codes.DIASTOLIC, to_mm_hg)],
    ),
    "weight": ("Weight", "kg", [("weight", codes.WEIGHT, to_kg)]),
    "haemoglobin": ("Haemoglobin", "g/dL", [("haemoglobin", codes.HAEMOGLOBIN, to_g_dl)]),
}


def pregnancy_series(
    history: PatientHistory, *, started_days_ago: int, ended_days_ago: int | None = None
) -> dict[str, dict]:
    """{chart: {"title", "unit", "series": [(name, [(week, value), …])]}} for charts with readings."""
    charts = {}
    for key, (title, unit, lines) in CHARTS.items():
        series = []
        for name, code, convert in lines:
            points = {}
            for reading in history.of(code):
                if reading.days_ago is None or reading.quantity is None:
                    continue
                if reading.days_ago > started_days_ago or (
                    ended_days_ago is not None and reading.days_ago < ended_days_ago
                ):
                    continue
                value = convert(reading.quantity, reading.unit)
                if value is not None:
                    week = round((started_days_ago - reading.days_ago) / 7, 1)
                    points.setdefault(week, round(value, 1))  # most recent reading of a day first
            if points:
                series.append((name, sorted(points.items())))
        if series:
            charts[key] = {"title": title, "unit": unit, "series": series}
    return charts
