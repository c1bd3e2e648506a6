"""Settings come from the environment, with safe production defaults."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_django(
    env_overrides,
    code=(
        "from django.conf import settings; "
        "print(settings.DEBUG, settings.DATABASES['default']['ENGINE'], settings.CELERY_BROKER_URL)"
    ),
):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "CELERY_BROKER"))}
    env.update(DJANGO_SETTINGS_MODULE="pmlm_site.settings", **env_overrides)
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {code}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = run_django({"PMLM_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is required" in result.stderr


def test_debug_is_off_unless_asked_and_defaults_need_no_servers(tmp_path):
    result = run_django({"PMLM_VAR_DIR": str(tmp_path), "DJANGO_SECRET_KEY": "x" * 50, "PMLM_AUDIT_KEY": "k" * 40})
    assert result.stdout.split() == ["False", "django.db.backends.sqlite3", "filesystem://"]
    assert (tmp_path / "celery-broker" / "out").is_dir()


def test_database_and_broker_come_from_the_environment(tmp_path):
    result = run_django(
        {
            "PMLM_VAR_DIR": str(tmp_path),
            "DJANGO_DEBUG": "1",
            "DATABASE_URL": "postgresql://u@db.example:5433/clinic",
            "CELERY_BROKER_URL": "redis://127.0.0.1:6379/3",
        }
    )
    assert result.stdout.split() == ["True", "django.db.backends.postgresql", "redis://127.0.0.1:6379/3"]
