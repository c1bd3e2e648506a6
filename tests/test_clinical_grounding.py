"""Every guidance is checked against her record, and the sentences that assert about her what her
record does not support are marked (issue 15, item 5)."""

from datetime import date

import numpy as np
import pytest

from api.tokens import token_issue
from patients import models as pm
from prompting.guidance import guidance_as_json, guidance_request_create
from prompting.models import GuidanceRequest, LLMEndpoint
from prompting.pmlm import findings, refine
from prompting.pmlm.evaluation import METRICS, guidance_metrics
from prompting.pmlm.grounding import sentences, unsupported_claims
from tests.llm_servers import ScriptedServer, completion

# The woman of the issue: never smoked, no diabetes, a normal pregnancy.
LOW_RISK = """- Age 29; G1 P0; pregnant, 30 weeks 2 days (from the last menstrual period); BMI 23.4 (normal).
- Risk flags: none raised by the WHO antenatal rules.
- Latest results: Blood pressure 118/76 mmHg (3 days ago); Haemoglobin 12.1 g/dL (3 days ago).
- Active conditions: Normal pregnancy.
- Current medicines: Folic acid 0.4 MG Oral Tablet.
- Lifestyle now: tobacco smoking status: never smoker (2 years ago); alcohol: none (3 days ago)."""

HIGH_RISK = """- Age 36; G3 P2; pregnant, 34 weeks 1 day (from the ultrasound); BMI 32.6 (obese).
- Risk flags: Hypertension (≥ 140/90 mmHg) — BP 152/98 mmHg (2 days ago); Pre-eclampsia — protein in urine (2 days ago); Gestational diabetes — OGTT 2 h 9.1 mmol/L (3 weeks ago); Tobacco use — current every day smoker (1 month ago); Anaemia (Hb < 11 g/dL) — Hb 9.8 g/dL (1 week ago); Multiple pregnancy — two fetal heartbeats (5 weeks ago); Previous caesarean section (4 years ago).
- Active conditions: Gestational diabetes mellitus; Pre-eclampsia; Twin pregnancy.
- Current medicines: Labetalol 200 MG Oral Tablet; Ferrous sulfate 325 MG Oral Tablet; Insulin isophane 100 UNT/ML; Aspirin 75 MG Oral Tablet."""

ISSUE_ANSWER = (
    "She should also watch for signs of low blood sugar (hypoglycaemia), which can indicate diabetes. "
    "She should avoid smoking and alcohol, as these can exacerbate pre-eclampsia."
)

# (context, sentence, the kind of claim it makes about her that her record does not support)
UNSUPPORTED = [
    (
        LOW_RISK,
        "She should also watch for signs of low blood sugar (hypoglycaemia), which can indicate diabetes.",
        "finding",
    ),
    (LOW_RISK, "She should avoid smoking and alcohol, as these can exacerbate pre-eclampsia.", "finding"),
    (LOW_RISK, "She has gestational diabetes and needs a glucose check.", "finding"),
    (LOW_RISK, "Given her pre-eclampsia, admit for monitoring.", "finding"),
    (LOW_RISK, "She is a smoker and should be referred to cessation services.", "finding"),
    (LOW_RISK, "Her anaemia needs treatment with oral iron.", "finding"),
    (LOW_RISK, "She is carrying twins, so growth scans are needed.", "finding"),
    (LOW_RISK, "As she has a history of miscarriage, offer early reassurance scans.", "finding"),
    (LOW_RISK, "Her previous caesarean section means she needs a VBAC discussion.", "finding"),
    (LOW_RISK, "Because she is hypertensive, check her urine for protein.", "finding"),
    (LOW_RISK, "She is GBS positive, so offer intrapartum antibiotics.", "finding"),
    (LOW_RISK, "Her urinary tract infection should be treated with nitrofurantoin.", "finding"),
    (LOW_RISK, "With her obesity, she needs a glucose tolerance test.", "finding"),
    (LOW_RISK, "You have pre-eclampsia, so rest and attend the day unit.", "finding"),
    (LOW_RISK, "She is RhD negative and needs anti-D at 28 weeks.", "finding"),
    (LOW_RISK, "Her blood pressure of 160/110 mmHg needs urgent treatment.", "number"),
    (LOW_RISK, "Her haemoglobin is 8.2 g/dL.", "number"),
    (LOW_RISK, "She is 36 weeks pregnant.", "number"),
    (LOW_RISK, "Her BMI of 35 calls for a glucose tolerance test.", "number"),
    (LOW_RISK, "Her fetal heart rate of 170 bpm is worrying.", "number"),
    (HIGH_RISK, "Her haemoglobin of 7.1 g/dL needs a transfusion discussion.", "number"),
    (LOW_RISK, "Continue labetalol 200 mg twice daily.", "medicine"),
    (LOW_RISK, "She is on metformin for her glucose.", "medicine"),
    (LOW_RISK, "Her iron tablets should be taken with orange juice.", "medicine"),
    (LOW_RISK, "She takes aspirin 75 mg at night.", "medicine"),
    (LOW_RISK, "She remains on insulin 10 units at bedtime.", "medicine"),
    (HIGH_RISK, "Continue her nifedipine.", "medicine"),
    (HIGH_RISK, "She is already taking methyldopa three times a day.", "medicine"),
]

# (context, sentence): general advice, safety-netting, hypotheticals, negations, and facts her record holds.
SUPPORTED = [
    (LOW_RISK, "Advise her to avoid alcohol in pregnancy."),
    (LOW_RISK, "She should avoid smoking and second-hand smoke."),
    (LOW_RISK, "Tell her to report headaches or visual changes, which can indicate pre-eclampsia."),
    (LOW_RISK, "Offer aspirin 150 mg at night from 12 weeks if she has risk factors for pre-eclampsia."),
    (LOW_RISK, "If she develops gestational diabetes, refer her to the diabetes clinic."),
    (LOW_RISK, "She has no history of diabetes."),
    (LOW_RISK, "She is not anaemic."),
    (LOW_RISK, "Her blood pressure of 118/76 mmHg is normal."),
    (LOW_RISK, "She is 30 weeks pregnant."),
    (LOW_RISK, "Continue folic acid 400 micrograms daily."),
    (LOW_RISK, "Screen her for gestational diabetes with an OGTT at 24–28 weeks."),
    (LOW_RISK, "Check her haemoglobin at 28 weeks to rule out anaemia."),
    (LOW_RISK, "She is at risk of pre-eclampsia, so monitor her blood pressure."),
    (LOW_RISK, "Encourage her to keep walking and eat a balanced diet."),
    (LOW_RISK, "Discuss the signs of preterm labour with her."),
    (LOW_RISK, "Ask about her smoking status at every visit."),
    (LOW_RISK, "Her haemoglobin of 12.1 g/dL is reassuring."),
    (LOW_RISK, "Give her iron if her haemoglobin falls below 11 g/dL."),
    (LOW_RISK, "Women with diabetes need tighter glucose targets."),
    (LOW_RISK, "Smoking in pregnancy increases the risk of preterm birth."),
    (LOW_RISK, "Keep her blood pressure below 140/90 mmHg."),
    (LOW_RISK, "Recommend 30 minutes of walking a day."),
    (HIGH_RISK, "She should also watch for signs of low blood sugar (hypoglycaemia) because she uses insulin."),
    (HIGH_RISK, "She should avoid smoking and alcohol, as these can exacerbate pre-eclampsia."),
    (HIGH_RISK, "Her pre-eclampsia needs close monitoring."),
    (HIGH_RISK, "She smokes, so refer her to a stop-smoking service."),
    (HIGH_RISK, "Her BMI of 32.6 increases her risk of gestational diabetes."),
    (HIGH_RISK, "Continue labetalol 200 mg twice daily."),
    (HIGH_RISK, "Her blood pressure of 152/98 mmHg needs review."),
    (HIGH_RISK, "She is carrying twins and had a previous caesarean section."),
    (HIGH_RISK, "Her iron tablets should be continued."),
    (HIGH_RISK, "She is 34 weeks pregnant with twins."),
    (HIGH_RISK, "Her anaemia (Hb 9.8 g/dL) needs treatment."),
    (HIGH_RISK, "Her hypertension should be kept below 135/85 mmHg."),
    (HIGH_RISK, "She is on aspirin 75 mg at night, which she should continue until 36 weeks."),
]


def marked(context, sentence):
    return unsupported_claims(sentence, context)


@pytest.mark.parametrize(("context", "sentence", "kind"), UNSUPPORTED, ids=[s for _, s, _ in UNSUPPORTED])
def test_a_sentence_that_asserts_about_her_what_her_record_does_not_support_is_marked(context, sentence, kind):
    claims = marked(context, sentence)
    assert len(claims) == 1
    assert kind in claims[0].kinds
    assert claims[0].reason


@pytest.mark.parametrize(("context", "sentence"), SUPPORTED, ids=[s for _, s in SUPPORTED])
def test_general_advice_and_what_her_record_supports_are_not_marked(context, sentence):
    assert marked(context, sentence) == []


def test_the_planted_set_is_marked_with_a_precision_of_at_least_90_and_a_recall_of_at_least_80_percent():
    true_positives = sum(bool(marked(c, s)) for c, s, _ in UNSUPPORTED)
    false_positives = sum(bool(marked(c, s)) for c, s in SUPPORTED)
    precision = true_positives / ((true_positives + false_positives) or 1)
    recall = true_positives / len(UNSUPPORTED)
    print(
        f"grounding on {len(UNSUPPORTED)} unsupported and {len(SUPPORTED)} supported planted sentences: "
        f"precision {precision:.2f}, recall {recall:.2f}"
    )
    assert len(UNSUPPORTED) >= 20
    assert len(SUPPORTED) >= 20
    assert precision >= 0.9
    assert recall >= 0.8


def test_the_issues_answer_is_marked_sentence_by_sentence_with_offsets_and_reasons():
    claims = unsupported_claims(ISSUE_ANSWER, LOW_RISK)
    assert (
        [ISSUE_ANSWER[c.start : c.end] for c in claims]
        == [c.sentence for c in claims]
        == [
            "She should also watch for signs of low blood sugar (hypoglycaemia), which can indicate diabetes.",
            "She should avoid smoking and alcohol, as these can exacerbate pre-eclampsia.",
        ]
    )
    assert "diabetes" in claims[0].reason
    assert "pre-eclampsia" in claims[1].reason
    assert set(claims[0].as_dict()) == {"sentence", "start", "end", "reason", "kinds"}


def test_a_record_that_negates_a_finding_does_not_support_it():
    assert "smoking" not in findings.affirmed_findings(LOW_RISK)
    assert {"smoking", "diabetes", "pre-eclampsia", "twins", "anaemia"} <= findings.affirmed_findings(HIGH_RISK)
    assert "pre-eclampsia" not in findings.affirmed_findings("- Risk flags: High risk of pre-eclampsia (WHO: aspirin).")
    assert unsupported_claims("She smokes ten cigarettes a day.", LOW_RISK)


def test_her_medicines_can_be_given_apart_from_the_record():
    assert unsupported_claims("Continue her labetalol.", LOW_RISK, medicines=["Labetalol 100 MG Oral Tablet"]) == []
    assert unsupported_claims("Continue her labetalol.", LOW_RISK, medicines=[])


def test_sentences_keep_decimals_and_leave_out_list_markers():
    text = "- Her Hb is 9.5 g/dL.\n1. Recheck in 2 weeks! Then review"
    assert [text[a:b] for a, b in sentences(text)] == ["Her Hb is 9.5 g/dL.", "Recheck in 2 weeks!", "Then review"]


def test_the_refinement_guard_and_the_grounding_check_share_one_vocabulary():
    assert refine.FINDING_PATTERNS is findings.FINDING_PATTERNS


def test_the_evaluation_reports_unsupported_claims_beside_the_safety_warnings():
    metrics = guidance_metrics(
        ISSUE_ANSWER, "Routine antenatal care.", [], 0, lambda texts: np.ones((len(texts), 1)), unsupported_claims=2
    )
    assert metrics["unsupported_claims"] == 2
    assert metrics["safety_warnings"] == 0
    keys = list(METRICS)
    assert keys.index("unsupported_claims") == keys.index("safety_warning_rate") + 1
    assert METRICS["unsupported_claims"]["higher"] is False


# --- a finished guidance stores its marks; the API and the workspace show them ------------------------

ANSWER = ISSUE_ANSWER + " Offer a glucose tolerance test at 24 to 28 weeks."


@pytest.fixture
def marked_guidance(imported_patient) -> GuidanceRequest:
    """The issue's answer for a pregnant woman who never smoked and has no diabetes."""
    with ScriptedServer(("json", 200, completion(ANSWER), {})) as server:
        endpoint = LLMEndpoint.objects.create(
            name="embedded",
            kind="openai",
            openness="open",
            settings={"base_url": server.base_url, "model": "m", "timeout": 2},
        )
        guidance = guidance_request_create(
            patient=imported_patient,
            question="What should she watch for?",
            at=date(2025, 5, 2),
            endpoint=endpoint,
            use_retrieval=False,
            run_inline=True,
        )
    assert guidance.status == pm.JobStatus.DONE, guidance.error
    return guidance


def test_a_finished_guidance_stores_the_sentences_her_record_does_not_support(marked_guidance):
    claims = GuidanceRequest.objects.get(pk=marked_guidance.pk).unsupported_claims
    assert [c["sentence"] for c in claims] == [
        "She should also watch for signs of low blood sugar (hypoglycaemia), which can indicate diabetes.",
        "She should avoid smoking and alcohol, as these can exacerbate pre-eclampsia.",
    ]
    assert all(ANSWER[c["start"] : c["end"]] == c["sentence"] and c["reason"] for c in claims)
    assert guidance_as_json(marked_guidance)["unsupported_claims"] == claims


def test_the_api_returns_the_marks_with_the_guidance(marked_guidance, partner, client):
    token = token_issue(username=partner.username, name="EHR")[1]
    body = client.get(f"/api/v1/guidance/{marked_guidance.pk}/", HTTP_AUTHORIZATION=f"Bearer {token}").json()
    assert body["unsupported_claims"] == marked_guidance.unsupported_claims
    assert len(body["unsupported_claims"]) == 2


def test_the_workspace_highlights_each_marked_sentence_with_its_reason(marked_guidance, client_for, clinician):
    patient = marked_guidance.patient
    panel = client_for(clinician).get(f"/patients/{patient.pk}/guidance/{marked_guidance.pk}/").content.decode()
    assert panel.count('<mark class="unsupported-claim"') == 2
    assert 'data-unsupported-claims="2"' in panel
    assert "low blood sugar presumes diabetes treatment, but her record has no diabetes" in panel
    assert "pre-eclampsia is stated as hers, but her record does not affirm it" in panel
    assert "Offer a glucose tolerance test at 24 to 28 weeks." in panel.split("</mark>")[-1]
    assert "<script>" not in panel.split('data-panel="guidance"')[1]
