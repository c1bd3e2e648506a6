"""Production settings, sign-in lock-out and the Content Security Policy."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

from audit.models import AuditEvent
from tests.conftest import PASSWORD

ROOT = Path(__file__).resolve().parent.parent


def test_check_deploy_is_clean_with_production_settings():
    env = dict(
        os.environ,
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(60),
        DJANGO_ALLOWED_HOSTS="clinic.example.org",
        PMLM_AUDIT_KEY=secrets.token_urlsafe(32),
        PMLM_CACHE_URL="redis://cache.example.org:6379/2",
    )
    run = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0 and "no issues" in run.stdout, run.stdout + run.stderr


def test_without_a_secret_key_production_refuses_to_start():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"} | {"DJANGO_DEBUG": "0"}
    run = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode != 0
    assert "DJANGO_SECRET_KEY" in run.stderr


def test_repeated_failed_sign_ins_lock_the_account_even_with_the_right_password_then(client, clinician):
    statuses = [
        client.post("/accounts/login/", {"username": "dr-north", "password": "guess"}).status_code for _ in range(5)
    ]
    assert statuses == [200, 200, 200, 200, 429]  # the fifth failure locks
    locked = client.post("/accounts/login/", {"username": "dr-north", "password": PASSWORD})
    assert locked.status_code == 429
    assert b"Sign-in locked" in locked.content
    assert "_auth_user_id" not in client.session
    assert AuditEvent.objects.filter(action="sign_in_failed").count() >= 5


def test_pages_and_the_api_docs_send_a_strict_content_security_policy_and_run_no_inline_script(
    client_for, clinician, client
):
    page = client_for(clinician).get("/patients/")
    policy = page["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "unsafe-eval" not in policy
    docs = client.get("/api/docs/").content.decode()
    assert "<script>" not in docs.replace(" ", "")
    assert "<script src=" in docs
