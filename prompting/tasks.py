"""Background work of the method. Tasks take ids, are idempotent and record progress on a row."""

from celery import shared_task

from prompting.services import peer_model_train


@shared_task(acks_late=True)
def train_peer_model_task(peer_model_id: int) -> str:
    return peer_model_train(peer_model_id=peer_model_id).status
