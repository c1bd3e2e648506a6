"""The API against its own OpenAPI schema (schemathesis), and the partner example against a live server.

Every schemathesis check is on (server errors, status codes, content types, response schemas and
headers, valid data accepted, invalid data rejected, authentication, methods, ...), with valid and
invalid data in every phase (schema examples, coverage of each parameter's edge values, fuzzing),
then a stateful run that chains calls: import a bundle, read her, ask for guidance, poll it, rate it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.config import SchemathesisConfig

from api.throttling import TokenRateThrottle
from api.tokens import token_issue
from pmlm_site.wsgi import application
from tests import fhir_builders as fb

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = 80  # fuzzed examples per operation, on top of the coverage phase's edge cases
STATEFUL = hypothesis_settings(
    max_examples=25, stateful_step_count=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)


CHECKED = {
    "generation": {"mode": "all", "max-examples": EXAMPLES},
    "operations": [
        # A bundle can be schema-valid and still not valid FHIR (a Patient without an id): the documented 422 names why.
        {
            "include-name": "POST /api/v1/bundles/",
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "422", "429"]}},
        },
        # Endpoint names are data, not schema: an unknown one is a 400 naming the field, for a schema-valid string.
        {
            "include-name": "POST /api/v1/patients/{patient_id}/guidance/",
            "checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "403", "404", "429"]}},
        },
    ],
}
CONFIG = SchemathesisConfig.from_dict(CHECKED)
# The same checks with the patient pinned to the fixture's (pat-1): generated bodies reach validation and the services,
# where a random id would mostly be answered 404.
HER = SchemathesisConfig.from_dict(
    {**CHECKED, "generation": {"mode": "all", "max-examples": 2 * EXAMPLES}, "parameters": {"path.patient_id": "pat-1"}}
)
# Loaded once at collection (pytest-django has configured Django by then); serving the schema needs no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, config=CONFIG)
# Only the operations on a patient (an `include` would also let in the operations CHECKED configures:
# schemathesis 4.32).
her_schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application, config=HER).exclude(
    path_regex=r"^(?!.*\{patient_id\})"
)
TOKEN = {}


@her_schema.auth(refresh_interval=None)
@schema.auth(refresh_interval=None)
class PartnerToken:
    """The real token of the test's partner, on every request (the auth checks also try none and a wrong one)."""

    def get(self, case, context):
        return TOKEN.get("value", "no-token-outside-a-test")

    def set(self, case, data, context):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture
def token(partner, imported_patient, settings, monkeypatch):
    """A partner of an organisation with a patient (pat-1), so generated requests also reach real objects.

    Requests go straight to the WSGI app, so, as Django's own test client does, the test's database
    connection must not be closed when a request finishes. The rate and queue limits are lifted:
    thousands of requests in a minute are the point here (their own tests are in test_hardening_limits)."""
    monkeypatch.setattr(TokenRateThrottle, "THROTTLE_RATES", {"token": "1000000/min"})
    settings.PMLM_MAX_PENDING_GUIDANCE_PER_ACCOUNT = settings.PMLM_MAX_PENDING_GUIDANCE_PER_ORGANISATION = 1_000_000
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    TOKEN["value"] = token_issue(username=partner.username)[1]
    yield TOKEN["value"]
    TOKEN.clear()
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@hypothesis_settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_makes_a_server_error_or_a_response_outside_the_schema(case, token):
    case.call_and_validate()  # no `checks=`: every check schemathesis has


@her_schema.parametrize()
@hypothesis_settings(deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_request_about_a_real_patient_makes_a_server_error_or_a_response_outside_the_schema(case, token):
    case.call_and_validate()


def test_chained_calls_keep_to_the_schema(token):
    schema.as_state_machine().run(settings=STATEFUL)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_partner_example_imports_fetches_a_prompt_and_gets_guidance_from_a_live_server(
    live_server, partner, tiny_policy, tmp_path
):
    from prompting.models import PromptTemplate
    from tests.helpers import running_worker

    PromptTemplate.objects.get_or_create(version="pmlm-1", defaults={"active": True})
    token = token_issue(username=partner.username)[1]
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(fb.small_bundle("pat-example")))
    with running_worker():
        run = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "partner_example.py"), str(bundle)],
            capture_output=True,
            text=True,
            timeout=240,
            env={"PMLM_API": live_server.url, "PMLM_TOKEN": token, "PATH": "/usr/bin:/bin", "PMLM_WAIT_SECONDS": "180"},
        )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Imported patient pat-example" in run.stdout
    assert '"status": "done"' in run.stdout
    assert (
        "Rivera" not in run.stdout.split("Personalised prompt")[1].split("Guidance requested")[0]
    )  # the prompt names nobody
