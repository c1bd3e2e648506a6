"""/healthz tells a deployment whether this process can serve: the database answers, the broker takes
a connection, the default LLM endpoint is reachable. 200 when all pass, 503 otherwise, with no
secret and no patient data in the answer."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import OperationalError, connections

from prompting.models import LLMEndpoint
from tests.llm_servers import ScriptedServer, completion, free_port

ROOT = Path(__file__).resolve().parent.parent
CHECKS = {"database", "broker", "llm"}


def probe(client):
    response = client.get("/healthz")
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    return response.status_code, response.json(), response.content.decode()


def failed(body) -> set[str]:
    return {name for name, check in body["checks"].items() if not check["ok"]}


def make_default(kind: str, settings: dict) -> LLMEndpoint:
    LLMEndpoint.objects.update(is_default=False)
    return LLMEndpoint.objects.create(name=f"probe-{kind}", kind=kind, settings=settings, is_default=True)


@pytest.mark.django_db
class TestReadiness:
    def test_a_ready_deployment_answers_200_without_a_sign_in_and_sets_no_cookie(self, client):
        status, body, _ = probe(client)
        assert status == 200
        assert body["status"] == "ok"
        assert set(body["checks"]) == CHECKS
        assert failed(body) == set()
        assert body["checks"]["llm"]["kind"] == "llamacpp"  # the embedded default: its GGUF is there, never loaded
        assert not client.cookies

    def test_a_database_that_does_not_answer_gives_503_naming_it_without_its_message(self, client, monkeypatch):
        def refuse(*args, **kwargs):
            raise OperationalError('connection to server at "db.internal" failed: password for "clinic" is hunter2')

        monkeypatch.setattr(connections["default"], "cursor", refuse)
        status, body, text = probe(client)
        assert status == 503
        assert body["status"] == "fail"
        assert "database" in failed(body)
        assert body["checks"]["database"]["error"] == "OperationalError"
        assert "hunter2" not in text
        assert "db.internal" not in text

    def test_a_broker_on_a_closed_port_gives_503_and_keeps_its_password(self, client, settings):
        settings.CELERY_BROKER_URL = f"redis://:s3cret-broker@127.0.0.1:{free_port()}/0"
        status, body, text = probe(client)
        assert status == 503
        assert failed(body) == {"broker"}
        assert "s3cret" not in text
        assert "127.0.0.1" not in text

    def test_a_filesystem_broker_whose_folders_are_gone_gives_503(self, client, settings, tmp_path):
        settings.CELERY_BROKER_URL = "filesystem://"
        settings.CELERY_BROKER_TRANSPORT_OPTIONS = {
            "data_folder_in": str(tmp_path / "gone"),
            "data_folder_out": str(tmp_path / "gone"),
            "processed_folder": str(tmp_path),
            "control_folder": str(tmp_path),
        }
        status, body, _ = probe(client)
        assert status == 503
        assert failed(body) == {"broker"}

    def test_an_openai_endpoint_on_a_closed_port_gives_503(self, client):
        make_default(
            "openai", {"base_url": f"http://127.0.0.1:{free_port()}/v1", "model": "m", "api_key_env": "PROBE_KEY"}
        )
        status, body, text = probe(client)
        assert status == 503
        assert failed(body) == {"llm"}
        assert "127.0.0.1" not in text

    def test_an_openai_endpoint_that_answers_at_all_is_reachable(self, client):
        with ScriptedServer(("json", 200, completion("unused"), {})) as server:  # it answers GET /models with 501
            make_default("openai", {"base_url": server.base_url, "model": "m"})
            status, body, _ = probe(client)
        assert status == 200
        assert body["checks"]["llm"] == {
            "ok": True,
            "kind": "openai",
            "ms": body["checks"]["llm"]["ms"],
        }
        assert server.requests == []  # nothing was generated

    def test_a_local_endpoint_whose_model_file_is_missing_gives_503(self, client, tmp_path):
        make_default("llamacpp", {"model_path": str(tmp_path / "missing.gguf")})
        status, body, _ = probe(client)
        assert status == 503
        assert failed(body) == {"llm"}
        assert body["checks"]["llm"]["error"] == "the model file is missing or unreadable"

    def test_a_local_model_file_that_is_not_a_gguf_gives_503(self, client, tmp_path):
        (tmp_path / "model.gguf").write_bytes(b"<html>not a model</html>")
        make_default("llamacpp", {"model_path": str(tmp_path / "model.gguf")})
        assert probe(client)[0] == 503

    def test_a_transformers_checkpoint_that_is_missing_gives_503(self, client, tmp_path):
        make_default("transformers", {"checkpoint": str(tmp_path / "nothing-here")})
        status, body, _ = probe(client)
        assert status == 503
        assert failed(body) == {"llm"}

    def test_no_default_endpoint_gives_503(self, client):
        LLMEndpoint.objects.update(is_default=False)
        status, body, _ = probe(client)
        assert status == 503
        assert body["checks"]["llm"]["error"] == "no active default LLM endpoint"


def run_site(env_overrides: dict, code: str, tmp_path) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "CELERY_BROKER", "PMLM_AUDIT"))
    }
    env |= {"DJANGO_SETTINGS_MODULE": "pmlm_site.settings", "PMLM_VAR_DIR": str(tmp_path), **env_overrides}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.test import Client; " + code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_wrong_database_url_makes_the_probe_answer_503_not_a_sign_in_page(tmp_path):
    run = run_site(
        {"DJANGO_DEBUG": "1", "DATABASE_URL": "postgresql://clinic:hunter2@127.0.0.1:1/clinic"},
        "r = Client().get('/healthz', HTTP_HOST='localhost'); print(r.status_code); print(r.content.decode())",
        tmp_path,
    )
    status, body = run.stdout.split("\n", 1)
    checks = json.loads(body)["checks"]
    assert status == "503" and not checks["database"]["ok"] and "hunter2" not in run.stdout, run.stderr[-2000:]


def test_in_production_the_probe_is_not_redirected_to_https_but_pages_are(tmp_path):
    run = run_site(
        {
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": "s" * 60,
            "PMLM_AUDIT_KEY": "k" * 40,
            "DJANGO_ALLOWED_HOSTS": "clinic.example.org",
        },
        "c = Client(HTTP_HOST='clinic.example.org'); "
        "print(c.get('/healthz').status_code, c.get('/accounts/login/').status_code)",
        tmp_path,
    )
    probe_status, page_status = run.stdout.split()
    assert probe_status in ("200", "503") and page_status == "301", run.stderr[-2000:]
