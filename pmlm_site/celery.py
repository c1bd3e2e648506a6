import os

from celery import Celery
from celery.signals import celeryd_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pmlm_site.settings")

app = Celery("pmlm_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@celeryd_init.connect
def use_the_lanes_broker_options(conf=None, options=None, **kwargs):
    """A worker's broker options are its lane's, read from the queues it consumes (-Q): on Redis, an interactive
    worker keeps its own record of unacknowledged tasks with a visibility timeout of about a minute; any other
    worker keeps the batch lane's, longer than any batch task (pmlm_site/lanes.py)."""
    from django.conf import settings

    from pmlm_site.lanes import lane_of

    lane = lane_of((options or {}).get("queues"), settings.PMLM_CELERY_QUEUE)
    conf.broker_transport_options = settings.PMLM_BROKER_TRANSPORT_OPTIONS_BY_LANE[lane]
