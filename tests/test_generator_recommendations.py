"""Physician recommendations follow her state at the encounter, in varied wording."""

from datetime import datetime, timedelta, timezone

from patients.demo import generator

VISIT = datetime(2026, 5, 1, 9, tzinfo=timezone.utc)


def snapshot(**observations):
    s = generator.Snapshot(external_id="p1", birth_date=None, visits=[VISIT], prenatal_encounters=[(1, VISIT)],
                           conditions=[("72892002", VISIT - timedelta(weeks=24), None)])
    for code, value in observations.items():
        s.observations[code.replace("_", "-")] = [(VISIT - timedelta(days=3), value)]
    return s


def text(s, seed=1):
    return generator.generate(s, seed).recommendations[0]["text"]


def test_raised_blood_pressure_leads_to_monitoring_advice():
    assert "raised" in text(snapshot(**{"8480_6": 150, "8462_4": 95})) or "elevated" in text(snapshot(**{"8480_6": 150, "8462_4": 95}))


def test_normal_blood_pressure_is_called_normal():
    assert "normal" in text(snapshot(**{"8480_6": 112, "8462_4": 70}))


def test_low_haemoglobin_leads_to_iron_treatment():
    assert "120 mg" in text(snapshot(**{"718_7": 9.8}))


def test_the_gestational_age_is_stated():
    assert "24 weeks" in text(snapshot()) or "24-week" in text(snapshot())


def test_wording_varies_across_patients():
    texts = {generator.generate(generator.Snapshot(**{**snapshot().__dict__, "external_id": f"p{i}"}), 1).recommendations[0]["text"]
             for i in range(20)}
    assert len(texts) > 3
