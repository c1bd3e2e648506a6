"""Peer information fits her situation.

What similar patients' physicians recommended comes only from encounters comparable to hers at
the consultation: written while not pregnant for a woman who is not pregnant, in the same
trimester for a pregnant woman (any pregnant visit when her gestational age is not recorded).
What helped them comes from ratings given while pregnant, or while not pregnant, as she is. When
nothing is comparable the line says so instead of borrowing.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from patients import models as pm
from patients.services import patient_import_bundle
from prompting.models import PeerProfile
from prompting.peer_models import peer_model_create, peer_model_train
from prompting.pmlm import codes
from prompting.pmlm.composer import PeerSummary, TemplateSpec, compose
from prompting.pmlm.history import Diagnosis, PatientHistory, Visit
from prompting.pmlm.peer_advice import NOT_PREGNANT, PREGNANT, SituationsAt, advice_shares, helped_shares
from prompting.prompts import prompt_build
from tests import fhir_builders as fb

TEMPLATE = TemplateSpec(
    "t-1",
    "Advise the clinician.",
    {"self": "Her record", "peer": "Patients like her", "knowledge": "Guidance sources", "question": "Question"},
    10_000,
)
ANTENATAL_ADVICE = [("folic acid", 1.0), ("iron supplementation", 1.0), ("fetal movements", 1.0)]
PEERS = PeerSummary(
    "ratings",
    [0.6, 0.5],
    recommended_by_situation={"pregnant": ANTENATAL_ADVICE, "trimester_2": ANTENATAL_ADVICE},
    helped_by_situation={"pregnant": [("Iron and folic acid supplementation", 4.5, 2)]},
)


def words(text):
    return len(text.split())


def not_pregnant():
    return PatientHistory(age_years=34)


def pregnant_weeks(weeks):
    return PatientHistory(age_years=34, diagnoses=[Diagnosis(codes.NORMAL_PREGNANCY, "Normal pregnancy", weeks * 7)])


def pregnant_undated():
    return PatientHistory(age_years=34, visits=[Visit("424619006", "Prenatal visit", 0, prenatal=True)])


def peer_text(history, peers=PEERS):
    prompt = compose(history, "What now?", TEMPLATE, peer=peers, count_tokens=words)
    return next(s["text"] for s in prompt.sections if s["source"] == "peer")


def test_a_woman_who_is_not_pregnant_never_reads_her_peers_antenatal_advice():
    text = peer_text(not_pregnant())
    assert "folic acid" not in text
    assert "fetal movements" not in text
    assert "Iron and folic acid" not in text
    assert "No similar patient's physician advice from a comparable situation (not pregnant)." in text
    assert "No care-item ratings from similar patients in a comparable situation (not pregnant)." in text


def test_a_pregnant_woman_reads_advice_from_the_same_trimester():
    text = peer_text(pregnant_weeks(20))
    assert (
        "Their physicians most often recommended at comparable visits (pregnant, trimester 2): folic acid (100%)"
        in text
    )
    assert (
        "What helped similar patients while pregnant (mean rating, raters): Iron and folic acid supplementation 4.5 (2)"
        in text
    )


def test_advice_from_another_trimester_is_not_borrowed():
    text = peer_text(pregnant_weeks(8))
    assert "No similar patient's physician advice from a comparable situation (pregnant, trimester 1)." in text
    assert "folic acid (100%)" not in text


def test_with_her_gestational_age_not_recorded_any_pregnant_visit_is_comparable():
    assert "at comparable visits (pregnant): folic acid (100%)" in peer_text(pregnant_undated())


def test_advice_written_while_not_pregnant_serves_a_woman_who_is_not_pregnant():
    peers = PeerSummary(
        "ratings",
        [0.5],
        recommended_by_situation={NOT_PREGNANT: [("smoking cessation", 0.5)], **PEERS.recommended_by_situation},
    )
    assert "at comparable visits (not pregnant): smoking cessation (50%)" in peer_text(not_pregnant(), peers)


def test_peers_stored_before_situations_were_kept_are_not_borrowed():
    from prompting.pmlm.peer_advice import by_situation

    legacy = PeerSummary(
        "ratings",
        [0.5],
        recommended_by_situation=by_situation([["folic acid", 1.0]], tuple, 5),
        helped_by_situation=by_situation([["iron-folic-acid", 4.5, 2]], tuple, 3),
    )
    text = peer_text(not_pregnant(), legacy)
    assert "folic acid" not in text
    assert "comparable situation (not pregnant)" in text


def test_shares_are_counted_among_the_neighbours_with_advice_in_that_situation():
    advice = {
        1: [
            ((PREGNANT, "trimester_2"), {"folic acid", "iron supplementation"}),
            ((NOT_PREGNANT,), {"smoking cessation"}),
        ],
        2: [((PREGNANT, "trimester_2"), {"folic acid"})],
        3: [((PREGNANT, "trimester_3"), {"birth planning"})],
        4: [((NOT_PREGNANT,), set())],  # advice with no key item: not counted
    }
    shares = advice_shares(advice, [1, 2, 3, 4])
    assert shares["trimester_2"] == [["folic acid", 1.0], ["iron supplementation", 0.5]]
    assert shares[PREGNANT] == [["folic acid", 0.67], ["birth planning", 0.33], ["iron supplementation", 0.33]]
    assert shares[NOT_PREGNANT] == [["smoking cessation", 1.0]]
    assert "trimester_1" not in shares


def test_what_helped_counts_each_neighbours_latest_rating_given_in_that_situation():
    rated = {
        1: [
            ((NOT_PREGNANT,), "contraception", 5),
            ((PREGNANT, "trimester_1"), "iron", 2),
            ((PREGNANT, "trimester_2"), "iron", 5),
        ],
        2: [((NOT_PREGNANT,), "contraception", 4), ((PREGNANT, "trimester_3"), "iron", 4)],
        3: [((PREGNANT,), "iron", 1)],
    }
    helped = helped_shares(rated, [1, 2])
    assert helped == {NOT_PREGNANT: [["contraception", 4.5, 2]], PREGNANT: [["iron", 4.5, 2]]}


def test_a_record_is_placed_in_the_situation_she_was_in_that_day():
    today = timezone.now().date()
    history = PatientHistory(
        age_years=30,
        diagnoses=[Diagnosis(codes.NORMAL_PREGNANCY, "Normal pregnancy", 200, abated_days_ago=10)],
        procedures=[],
    )
    situations = SituationsAt({7: history}, today)
    assert situations(7, today - timedelta(days=60)) == (PREGNANT, "trimester_2")  # 20 weeks then
    assert situations(7, today - timedelta(days=190)) == (PREGNANT, "trimester_1")
    assert situations(7, today - timedelta(days=400)) == (NOT_PREGNANT,)  # before it
    assert situations(7, today - timedelta(days=5)) == (NOT_PREGNANT,)  # after the birth
    assert situations(8, today) == (NOT_PREGNANT,)  # nothing known of her


# --- the whole path: records, peer training, the prompt and the page -------------------------------------


ANTENATAL = "Continue folic acid and iron supplementation daily; count fetal movements and come in if they reduce."
CHECK_UP = "Stop smoking: we agreed a quit date and referral to cessation support."


def _day(days_ago: int) -> str:
    return f"{(timezone.now() - timedelta(days=days_ago)).date().isoformat()}T09:00:00Z"


def _woman(organisation, pid: str, *resources):
    assert patient_import_bundle(
        organisation=organisation, bundle=fb.bundle(fb.patient(pid), *resources), source="test"
    ).ok
    return organisation.patients.get(external_id=pid)


@pytest.fixture
def clinic(organisation):
    """Six mothers advised at 20 weeks (and, earlier, while not pregnant), and four women to ask about."""
    items = {
        slug: pm.CareItem.objects.create(slug=slug, name=name, category="intervention")
        for slug, name in [
            ("iron-folic-acid", "Iron and folic acid supplementation"),
            ("contraception", "Contraception counselling"),
            ("exercise", "Prenatal exercise programme"),
        ]
    }
    today = timezone.now().date()

    def rate(patient, slug, rating, days_ago):
        pm.CareRating.objects.create(
            patient=patient, care_item=items[slug], rating=rating, rated_on=today - timedelta(days=days_ago)
        )

    for n in range(6):
        pid = f"mother-{n}"
        mother = _woman(
            organisation,
            pid,
            fb.condition(f"{pid}-preg", pid, onset=_day(200)),
            fb.encounter(f"{pid}-anc", pid, start=_day(60)),
            fb.encounter(f"{pid}-gp", pid, start=_day(700), code="185349003", display="Encounter for check up"),
        )
        for eid, text in ((f"{pid}-anc", ANTENATAL), (f"{pid}-gp", CHECK_UP)):
            encounter = pm.Encounter.objects.get(patient=mother, fhir_id=eid)
            pm.PhysicianRecommendation.objects.create(
                patient=mother, encounter=encounter, text=text, written_at=encounter.period_start
            )
        rate(mother, "iron-folic-acid", 5, 60)
        rate(mother, "exercise", 4 + n % 2, 60)
        rate(mother, "contraception", 4, 700)
    women = {
        "not pregnant": _woman(organisation, "w-not"),
        "trimester 2": _woman(organisation, "w-t2", fb.condition("w-t2-preg", "w-t2", onset=_day(140))),
        "trimester 1": _woman(organisation, "w-t1", fb.condition("w-t1-preg", "w-t1", onset=_day(50))),
        "undated": _woman(organisation, "w-und", fb.encounter("w-und-anc", "w-und", start=_day(0))),
    }
    for n, woman in enumerate(women.values()):  # she rates as the mothers did: they are her peers
        rate(woman, "iron-folic-acid", 5, 400)
        rate(woman, "exercise", 4 + n % 2, 400)
        rate(woman, "contraception", 4, 400)
    peer_model_train(peer_model_id=peer_model_create(organisation=organisation).pk)
    return women


def peer_section(patient):
    prompt = prompt_build(patient=patient, question="What should we plan for her next visit?")
    return next(s["text"] for s in prompt.sections if s["source"] == "peer")


def test_the_stored_peers_keep_advice_by_the_situation_it_was_written_in(clinic):
    profile = PeerProfile.objects.get(patient=clinic["not pregnant"])
    assert set(profile.recommended) == {NOT_PREGNANT, PREGNANT, "trimester_2"}
    assert profile.recommended[NOT_PREGNANT] == [["smoking cessation", 1.0]]
    assert {item for item, _ in profile.recommended["trimester_2"]} >= {
        "folic acid",
        "iron supplementation",
        "fetal movements",
    }
    assert [slug for slug, _, _ in profile.helped[PREGNANT]][:1] == ["iron-folic-acid"]


def test_her_prompt_reads_only_her_peers_advice_from_a_comparable_situation(clinic):
    text = peer_section(clinic["not pregnant"])
    assert "at comparable visits (not pregnant): smoking cessation (100%)" in text
    assert "folic acid" not in text
    assert "fetal movements" not in text
    assert "Iron and folic acid" not in text
    text = peer_section(clinic["trimester 2"])
    assert "at comparable visits (pregnant, trimester 2)" in text
    assert "folic acid (100%)" in text
    assert "smoking" not in text
    assert "What helped similar patients while pregnant" in text
    assert "Iron and folic acid supplementation 5.0" in text
    text = peer_section(clinic["trimester 1"])
    assert "No similar patient's physician advice from a comparable situation (pregnant, trimester 1)." in text
    text = peer_section(clinic["undated"])
    assert "at comparable visits (pregnant): " in text
    assert "folic acid (100%)" in text


def test_the_patient_page_shows_only_comparable_peer_advice(clinic, client_for, clinician):
    page = client_for(clinician).get(f"/patients/{clinic['not pregnant'].pk}/").content.decode()
    assert "at comparable visits (not pregnant)" in page
    assert "smoking cessation" in page
    assert "folic acid" not in page.split('id="h-peers"')[1].split("</section>")[0]
