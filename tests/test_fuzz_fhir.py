"""Property-based fuzzing of the FHIR importer: whatever arrives, no crash, a clear message, and no
partial write."""

import copy
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patients import models as m
from patients.services import patient_import_bundle
from tests import fhir_builders as fb

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)


def paths(value, prefix=()):
    """Every place inside a JSON value: mutating any one of them must be handled."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths(child, prefix + (index,))


BUNDLE = fb.small_bundle("pat-fuzz")
PATHS = [p for p in paths(BUNDLE) if p]


def mutate(bundle, path, action, junk):
    bundle = copy.deepcopy(bundle)
    parent = bundle
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if action == "delete":
        del parent[last]
    else:
        parent[last] = junk
    return bundle


def counts():
    return (
        m.Patient.objects.count(),
        m.Observation.objects.count(),
        m.Encounter.objects.count(),
        m.Condition.objects.count(),
    )


@pytest.mark.django_db
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=st.sampled_from(PATHS), action=st.sampled_from(["delete", "replace"]), junk=JUNK)
def test_a_mutated_bundle_is_imported_or_refused_whole_with_a_message(organisation, path, action, junk):
    before = counts()
    result = patient_import_bundle(organisation=organisation, bundle=mutate(BUNDLE, path, action, junk), source="fuzz")
    if result.ok:
        assert counts() >= before
    else:
        assert counts() == before, f"partial write after: {result.error}"
        assert result.error
        assert len(result.error) < 2000
        json.dumps(result.error)  # a plain, printable message


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.recursive(
        JUNK,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
        max_leaves=10,
    )
)
def test_any_json_at_all_is_refused_cleanly(organisation, body):
    before = counts()
    result = patient_import_bundle(organisation=organisation, bundle=body, source="fuzz")
    assert not result.ok
    assert result.error
    assert counts() == before
