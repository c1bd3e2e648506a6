"""What several test modules share: a finished refinement run, a real Celery worker, the API's error shape,
a hypertensive patient's bundle. Fixtures live in conftest.py."""

import os
import shutil
import subprocess
import sys
import uuid
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

from patients import models as pm
from pmlm_site.celery import app as celery_app
from pmlm_site.lanes import BATCH, LANES, queue_name, task_routes
from prompting.models import RefinementRun
from prompting.pmlm.edits import MENU, MENU_VERSION, edit_named
from tests import fhir_builders as fb

ROOT = Path(__file__).resolve().parent.parent

# The menu changes between versions: tests name its edits by what they do, not by their codes.
ADDS = next(e.code for e in MENU if e.sentences and not (e.drop or e.first_source_only or e.restate_flags))
RESTATES = next(e.code for e in MENU if e.restate_flags)
BEST_FIXED = ADDS  # the best fixed edit a finished run records


def finished_run(organisation, tiny_checkpoint, **fields) -> RefinementRun:
    """A finished run of this menu whose checkpoint (the tiny model) lies under the var directory, as a real run's
    does."""
    checkpoint = Path("models") / "refiner" / f"test-{organisation.slug}-{RefinementRun.objects.count() + 1}"
    shutil.copytree(tiny_checkpoint, settings.VAR_DIR / checkpoint, dirs_exist_ok=True)
    defaults = dict(
        version=RefinementRun.objects.filter(organisation=organisation).count() + 1,
        status=pm.JobStatus.DONE,
        progress=100,
        step=2,
        checkpoint=str(checkpoint),
        reward_initial=0.21,
        reward_refined=0.24,
        accepted_share=0.5,
        target_calls=24,
        config={
            "steps": 2,
            "num_generations": 2,
            "max_completion_tokens": 3,
            "target_endpoint": "tiny-target",
            "device": "cpu",
            "menu": MENU_VERSION,
        },
        report={
            "menu": MENU_VERSION,
            "target_calls": 24,
            "best_fixed": {
                "code": BEST_FIXED,
                "label": edit_named(BEST_FIXED).label,
                "mean_reward": 0.23,
                "initial_mean_reward": 0.21,
            },
        },
        curve=[
            {"step": 1, "reward_mean": 0.18, "reward_std": 0.02, "accepted_share": 0.5, "seconds": 1.0},
            {"step": 2, "reward_mean": 0.23, "reward_std": 0.03, "accepted_share": 1.0, "seconds": 1.1},
        ],
    )
    defaults.update(fields)
    return RefinementRun.objects.create(organisation=organisation, **defaults)


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgresql://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


def route_tasks_to(prefix: str):
    """Send tasks from this process to the lanes of this queue prefix, as a deployment with that prefix does."""
    celery_app.conf.task_routes = task_routes(prefix)
    celery_app.conf.task_default_queue = queue_name(prefix, BATCH)
    celery_app.amqp.flush_routes()
    celery_app.amqp.__dict__.pop("router", None)  # a cached property built from the routes


@contextmanager
def running_worker(prefix: str = "", *, lanes: tuple[str, ...] = LANES, pool: str = "solo", **extra_env):
    """A real worker consuming these lanes of its own queue prefix (both by default); tasks sent from the test
    meanwhile go to that prefix's lanes."""
    prefix = prefix or f"test-{uuid.uuid4().hex[:8]}"
    route_tasks_to(prefix)
    env = dict(
        os.environ,
        DATABASE_URL=database_url(),
        PMLM_CELERY_QUEUE=prefix,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        PMLM_VAR_DIR=str(settings.VAR_DIR),
        DJANGO_DEBUG="1",
        DATABASE_CONN_MAX_AGE="0",
        **extra_env,
    )
    queues = ",".join(queue_name(prefix, lane) for lane in lanes)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "pmlm_site",
            "worker",
            f"--pool={pool}",
            "--concurrency=1",
            "--loglevel=INFO",
            "-Q",
            queues,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        route_tasks_to(settings.PMLM_CELERY_QUEUE)
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


FHIR = "application/fhir+json"


def is_error(response, status):
    body = response.json()
    return (
        response.status_code == status
        and set(body["error"]) >= {"status", "code", "message"}
        and body["error"]["status"] == status
    )


def hypertensive_bundle(pid="p-bp"):
    return fb.bundle(
        fb.patient(pid, family="Okonkwo-Test", given=("Adaeze",)),
        fb.encounter(f"{pid}-e", pid),
        fb.bp_panel(f"{pid}-bp", pid, f"{pid}-e", systolic=152, diastolic=98),
        fb.condition(f"{pid}-c", pid),
    )
