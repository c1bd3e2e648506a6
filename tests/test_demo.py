"""The demo cohort: users, Synthea patients made current, and generated data with real structure."""

import statistics
from collections import defaultdict
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from patients import models as m
from patients.demo import generator
from patients.demo.seed import demo_seed
from patients.selectors import patient_pregnancy


@pytest.fixture
def seeded(db):
    return demo_seed(seed=3, limit=12, password="demo-password-1", knowledge=False)


def generated_counts():
    return (m.LifestyleRecord.objects.count(), m.CareRating.objects.count(), m.PhysicianRecommendation.objects.count())


def test_seed_demo_creates_users_with_roles_in_the_demo_organisation(seeded, client):
    organisation = m.Organisation.objects.get(slug="demo-clinic")
    roles = dict(m.Membership.objects.filter(organisation=organisation).values_list("user__username", "role"))
    assert roles == {"demo-clinician": "clinician", "demo-curator": "curator", "demo-partner": "partner"}
    response = client.post("/accounts/login/", {"username": "demo-clinician", "password": "demo-password-1"})
    assert response.status_code == 302
    assert client.session.get("_auth_user_id")


def test_seed_demo_imports_the_first_bundles_and_generates_what_synthea_lacks(seeded):
    assert seeded.bundles_imported == 12
    assert seeded.bundles_rejected == []
    assert m.Patient.objects.count() == 12
    lifestyle, ratings, recommendations = generated_counts()
    assert lifestyle > 12 * 8
    assert ratings > 0
    prenatal = m.Encounter.objects.filter(code__in=["424441002", "424619006"]).count()
    assert recommendations == prenatal > 0
    assert m.CareItem.objects.count() >= 15


def test_the_cohort_is_moved_to_the_present(seeded):
    latest = m.Encounter.objects.order_by("-period_start").first().period_start
    assert 0 <= (timezone.now() - latest).days <= 60


def test_running_seed_demo_again_duplicates_nothing(seeded):
    before = generated_counts(), m.Observation.objects.count()
    demo_seed(seed=3, limit=12, password="demo-password-1", knowledge=False)
    assert (generated_counts(), m.Observation.objects.count()) == before


def test_clinician_written_recommendations_survive_a_reseed(seeded):
    rec = m.PhysicianRecommendation.objects.first()
    rec.source, rec.text = m.RecordSource.CLINICIAN, "Written by hand."
    rec.save()
    demo_seed(seed=3, limit=12, password="demo-password-1", knowledge=False)
    assert m.PhysicianRecommendation.objects.get(pk=rec.pk).text == "Written by hand."


def test_the_command_prints_a_summary_with_a_generated_password_and_loads_the_knowledge_base(db, capsys):
    call_command("seed_demo", "--limit", "2")
    output = capsys.readouterr().out
    assert "Bundles imported: 2" in output
    assert "(generated)" in output
    assert "Knowledge: 158 WHO antenatal decision rules" in output


def test_synthetic_patients_have_full_histories_and_many_are_pregnant(db):
    summary = demo_seed(seed=5, limit=0, synthetic_patients=60, password="demo-password-1", knowledge=False)
    assert summary.synthetic_patients == 60
    assert m.Patient.objects.count() == 60
    today = timezone.now().date()
    pregnant = [p for p in m.Patient.objects.all() if patient_pregnancy(p, today).pregnant]
    assert 15 <= len(pregnant) <= 50
    assert m.Observation.objects.filter(code="85354-9").count() >= 60 * 4
    assert m.PhysicianRecommendation.objects.count() > 0


def test_generation_is_deterministic_for_a_seed():
    snapshot = generator.Snapshot(
        external_id="p",
        birth_date=None,
        visits=[timezone.now()],
        prenatal_encounters=[(1, timezone.now())],
        conditions=[("72892002", timezone.now(), None)],
    )
    assert generator.generate(snapshot, 1) == generator.generate(snapshot, 1)
    assert generator.generate(snapshot, 1) != generator.generate(snapshot, 2)


def test_ratings_carry_latent_structure_and_are_missing_not_at_random():
    """Women who like taking a medicine rate iron above exercise; women who change habits the reverse."""
    now = timezone.now()
    means = defaultdict(list)
    observed = []
    for i in range(600):
        snapshot = generator.Snapshot(
            external_id=f"p{i}",
            birth_date=None,
            visits=[now - timedelta(days=60), now],
            prenatal_encounters=[(1, now - timedelta(days=60)), (2, now)],
            conditions=[("72892002", now - timedelta(weeks=20), None)],
        )
        out = generator.generate(snapshot, 11)
        for r in out.ratings:
            means[(out.latent_type, r["item"])].append(r["rating"])
            observed.append(r["rating"])
    avg = {key: statistics.mean(values) for key, values in means.items()}
    assert avg[("routine follower", "iron-folic-acid")] > avg[("routine follower", "prenatal-exercise")] + 0.5
    assert avg[("lifestyle changer", "prenatal-exercise")] > avg[("lifestyle changer", "iron-folic-acid")] + 0.5
    # Missing not at random: observed ratings lean high, because low ones are less often reported.
    assert statistics.mean(observed) > 3.2
    assert set(observed) == {1, 2, 3, 4, 5}
