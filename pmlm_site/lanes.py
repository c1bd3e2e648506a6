"""Celery lanes: a person waits on the interactive lane; long jobs take the batch lane.

Each lane is a queue named from a prefix (PMLM_CELERY_QUEUE), so several deployments or test runs
share one broker without taking each other's work. Each lane has its own workers and time limits
and, on Redis, its own record of delivered but unacknowledged tasks with its own visibility
timeout: an interactive worker hands a lost guidance request on after about a minute without
touching batch tasks that run for hours (README: "Running in production").

Plain Python (no Django): settings, the Celery app and the tests read it.
"""

from __future__ import annotations

INTERACTIVE, BATCH = "interactive", "batch"
LANES = (INTERACTIVE, BATCH)

# Every task by name. A task missing here goes to the default queue, the batch lane.
TASK_LANES = {
    "prompting.tasks.run_guidance_task": INTERACTIVE,  # guidance requests and A/B pairs: a page or a partner waits
    "prompting.tasks.sweep_stuck_jobs_task": INTERACTIVE,  # never behind a long job
    "prompting.tasks.prefill_guidance_task": INTERACTIVE,  # her workspace opened: read her prompt's start
    "audit.tasks.link_audit_task": INTERACTIVE,  # milliseconds, every few seconds: never behind a long job
    "prompting.tasks.run_comparison_task": BATCH,
    "prompting.tasks.run_refinement_task": BATCH,
    "prompting.tasks.run_evaluation_task": BATCH,
    "prompting.tasks.train_peer_model_task": BATCH,
    "prompting.tasks.index_knowledge_document_task": BATCH,
    "patients.tasks.run_import_job": BATCH,
    "audit.tasks.anchor_audit_task": BATCH,  # walks the whole chain
}
# Which job limit (settings.PMLM_JOB_LIMITS_SECONDS) bounds each batch task.
BATCH_TASK_LIMITS = {
    "prompting.tasks.run_comparison_task": "comparison",
    "prompting.tasks.run_refinement_task": "refinement",
    "prompting.tasks.run_evaluation_task": "evaluation",
    "prompting.tasks.train_peer_model_task": "peer_model",
    "prompting.tasks.index_knowledge_document_task": "knowledge",
    "patients.tasks.run_import_job": "import",
}


def queue_name(prefix: str, lane: str) -> str:
    return f"{prefix}-{lane}"


def task_routes(prefix: str) -> dict:
    return {task: {"queue": queue_name(prefix, lane)} for task, lane in TASK_LANES.items()}


def lane_of(queues, prefix: str) -> str:
    """The lane of a worker consuming these queues (its -Q): interactive only when it consumes nothing else.
    A worker on both lanes keeps the batch lane's long visibility timeout, so a running batch task is never
    handed to another worker."""
    if isinstance(queues, str):
        queues = queues.split(",")
    queues = {q.strip() for q in queues or () if q.strip()}
    return INTERACTIVE if queues == {queue_name(prefix, INTERACTIVE)} else BATCH


def redis_transport_options(prefix: str, lane: str, *, visibility_timeout: int, restore_every: int) -> dict:
    """kombu's Redis options for a lane's workers. The unacknowledged-task record is per connection: a worker
    restores (redelivers) only the tasks in its own lane's record older than its own lane's visibility timeout."""
    keys = queue_name(prefix, lane)
    return {
        "visibility_timeout": visibility_timeout,
        "unacked_key": f"{keys}-unacked",
        "unacked_index_key": f"{keys}-unacked_index",
        "unacked_mutex_key": f"{keys}-unacked_mutex",
        # A worker that dies holding the lock (during a look, a few milliseconds) delays the next look this long.
        "unacked_mutex_expire": min(300, visibility_timeout),
        "unacked_restore_interval": restore_every,  # seconds between looks for lost tasks (event loop)
        "unacked_restore_throttle": 1,  # every look is a real one
    }
