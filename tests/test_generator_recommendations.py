"""Physician recommendations follow her state at the encounter, in varied wording."""

from datetime import datetime, timedelta, timezone

from patients.demo import generator

VISIT = datetime(2026, 5, 1, 9, tzinfo=timezone.utc)


def snapshot(**observations):
    s = generator.Snapshot(
        external_id="p1",
        birth_date=None,
        visits=[VISIT],
        prenatal_encounters=[(1, VISIT)],
        conditions=[("72892002", VISIT - timedelta(weeks=24), None)],
    )
    for code, value in observations.items():
        s.observations[code.replace("_", "-")] = [(VISIT - timedelta(days=3), value)]
    return s


def text(s, seed=1):
    return generator.generate(s, seed).recommendations[0]["text"]


def test_raised_blood_pressure_leads_to_monitoring_advice():
    assert "raised" in text(snapshot(**{"8480_6": 150, "8462_4": 95})) or "elevated" in text(
        snapshot(**{"8480_6": 150, "8462_4": 95})
    )


def test_normal_blood_pressure_is_called_normal():
    assert "normal" in text(snapshot(**{"8480_6": 112, "8462_4": 70}))


def test_low_haemoglobin_leads_to_iron_treatment():
    assert "120 mg" in text(snapshot(**{"718_7": 9.8}))


def test_the_gestational_age_is_stated():
    assert "24 weeks" in text(snapshot()) or "24-week" in text(snapshot())


def test_wording_varies_across_patients():
    texts = {
        generator.generate(generator.Snapshot(**{**snapshot().__dict__, "external_id": f"p{i}"}), 1).recommendations[0][
            "text"
        ]
        for i in range(20)
    }
    assert len(texts) > 3


# --- a visit coded prenatal after her pregnancy had ended -------------------------------------------

ANTENATAL_ONLY = ("antenatal", "gestation", "fetal movements", "reduced movements", "dating", "aspirin", "weight gain")


def ended_snapshot(*, conditions=(), procedures=()):
    """Synthea's pattern: a prenatal visit after the pregnancy ended (the episode closes at that visit)."""
    return generator.Snapshot(
        external_id="p1",
        birth_date=None,
        visits=[VISIT],
        prenatal_encounters=[(1, VISIT)],
        conditions=list(conditions),
        pregnancy_ending_procedures=list(procedures),
    )


def test_the_follow_up_visit_after_an_induced_termination_is_about_care_after_it_not_antenatal_care():
    s = ended_snapshot(
        conditions=[("72892002", VISIT - timedelta(weeks=4), VISIT)],
        procedures=[(generator.TERMINATION_CODE, VISIT - timedelta(weeks=2))],
    )
    for seed in range(6):
        advice = text(s, seed)
        assert "termination" in advice
        assert "contraception" in advice
        assert "Anti-D" in advice
        assert not any(word in advice.lower() for word in ANTENATAL_ONLY), advice


def test_a_miscarriage_diagnosed_at_the_booking_visit_is_advised_on_as_a_pregnancy_loss():
    advice = text(ended_snapshot(conditions=[("19169002", VISIT, None)]))
    assert "miscarriage" in advice or "loss" in advice
    assert "heavy bleeding" in advice
    assert not any(word in advice.lower() for word in ANTENATAL_ONLY), advice


def test_a_new_pregnancy_after_an_earlier_loss_gets_antenatal_advice_again():
    s = ended_snapshot(
        conditions=[("19169002", VISIT - timedelta(weeks=11), None), ("72892002", VISIT - timedelta(weeks=6), None)]
    )
    assert "6 weeks" in text(s) or "6-week" in text(s)


def test_a_pregnancy_episode_that_closes_at_this_visit_without_a_recorded_cause_is_not_advised_on_as_antenatal():
    advice = text(ended_snapshot(conditions=[("72892002", VISIT - timedelta(weeks=11), VISIT)]))
    assert "pregnancy has ended" in advice and not any(word in advice.lower() for word in ANTENATAL_ONLY), advice
