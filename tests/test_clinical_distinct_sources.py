"""Guidance sources are distinct: one passage is never cited twice as [2] and [3].

WHO's decision tables repeat a rule for each input that triggers it (systolic ≥ 140, diastolic ≥
90: "Measure BP again after 10–15 minutes rest"), so their chunks repeat word for word. Retrieval
keeps the best-scoring copy of a passage (same words, whatever the case, spacing or punctuation)
and fills the budget with the next distinct passage.
"""

import pytest

from prompting.knowledge import knowledge_document_index, knowledge_load_who, knowledge_search
from prompting.models import KnowledgeDocument
from prompting.pmlm.retrieval import distinct_passages, passage_key

REPEAT_BP = (
    "Measure BP again after 10–15 minutes rest. Given high values upon first measure, blood pressure should be "
    "measured again."
)


def test_passages_with_the_same_words_are_the_same_passage():
    assert passage_key("Measure BP again after 10–15 minutes rest.") == passage_key(
        "  measure bp AGAIN after 10-15 minutes, rest "
    )
    assert passage_key("Measure BP again.") != passage_key("Measure BP once.")


def test_the_best_scoring_copy_is_kept_and_the_next_distinct_passage_fills_the_budget():
    hits = [
        ("a", REPEAT_BP, 0.9),
        ("b", REPEAT_BP.upper(), 0.8),
        ("c", "Check urine protein.", 0.7),
        ("d", "Give aspirin.", 0.6),
    ]
    assert distinct_passages(hits, k=3) == [("a", 0.9), ("c", 0.7), ("d", 0.6)]


def test_a_passage_wholly_inside_a_better_one_adds_nothing():
    hits = [
        ("long", f"Hypertension in pregnancy. {REPEAT_BP} Refer if it stays high.", 0.9),
        ("short", REPEAT_BP, 0.8),
        ("other", "Check urine protein.", 0.5),
    ]
    assert [key for key, _ in distinct_passages(hits, k=2)] == ["long", "other"]


@pytest.mark.django_db
def test_duplicated_documents_are_retrieved_once_and_the_budget_is_filled():
    for n, text in enumerate(
        [
            REPEAT_BP,
            REPEAT_BP,
            "  measure bp again after 10-15 minutes REST; given high values upon first "
            "measure, blood pressure should be measured again!",
        ]
    ):
        knowledge_document_index(
            document=KnowledgeDocument.objects.create(
                title="Repeat blood pressure", text=text, external_key=f"copy-{n}"
            )
        )
    other = KnowledgeDocument.objects.create(
        title="Proteinuria", text="Test urine protein with a dipstick when blood pressure is high."
    )
    knowledge_document_index(document=other)
    hits = knowledge_search("Blood pressure is high: measure it again?", k=2, min_score=0.0)
    assert len(hits) == 2
    assert len({passage_key(chunk.text) for chunk, _ in hits}) == 2
    assert hits[1][0].document == other
    assert hits[0][1] >= hits[1][1]


@pytest.mark.django_db
def test_the_who_tables_give_distinct_passages_for_a_raised_blood_pressure():
    knowledge_load_who()
    hits = knowledge_search("Blood pressure 150/95: measure BP again after 10–15 minutes rest", k=5)
    keys = [passage_key(chunk.text) for chunk, _ in hits]
    assert len(hits) == 5
    assert len(set(keys)) == 5
    assert [score for _, score in hits] == sorted((score for _, score in hits), reverse=True)
