"""The API against its own OpenAPI schema (schemathesis), and the partner example against a live server."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import signals
from django.db import close_old_connections
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_headers_conformance, response_schema_conformance, status_code_conformance,
)

from api.tokens import token_issue
from pmlm_site.wsgi import application
from tests import fhir_builders as fb

ROOT = Path(__file__).resolve().parent.parent
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


# Loaded once at collection (pytest-django has configured Django by then); serving the schema needs no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


@pytest.fixture
def token(partner, imported_patient, tiny_policy):
    """A partner of an organisation with a patient (pat-1), so generated requests also reach real objects.

    Requests go straight to the WSGI app, so, as Django's own test client does, the test's database
    connection must not be closed when a request finishes."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield token_issue(username=partner.username)[1]
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_makes_a_server_error_or_a_response_outside_the_schema(case, token):
    case.call_and_validate(headers={"Authorization": f"Bearer {token}"}, checks=CHECKS)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_partner_example_imports_fetches_a_prompt_and_gets_guidance_from_a_live_server(live_server, partner, tiny_policy,
                                                                                         tmp_path):
    from prompting.models import PromptTemplate
    from tests.test_worker import running_worker

    PromptTemplate.objects.get_or_create(version="pmlm-1", defaults={"active": True})
    token = token_issue(username=partner.username)[1]
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(fb.small_bundle("pat-example")))
    with running_worker():
        run = subprocess.run([sys.executable, str(ROOT / "examples" / "partner_example.py"), str(bundle)], capture_output=True,
                             text=True, timeout=240, env={"PMLM_API": live_server.url, "PMLM_TOKEN": token, "PATH": "/usr/bin:/bin",
                                                          "PMLM_WAIT_SECONDS": "180"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Imported patient pat-example" in run.stdout and '"status": "done"' in run.stdout
    assert "Rivera" not in run.stdout.split("Personalised prompt")[1].split("Guidance requested")[0]  # the prompt names nobody
