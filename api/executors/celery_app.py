"""The Celery app shared by the API (which sends) and the workers (which execute).

Only a run id travels: the task's single argument. A task is acknowledged late (after the
run) so a worker that dies before starting a prefetched run does not lose it; a
redelivered task whose run was already claimed (or written off) does nothing, because
claiming a run is a conditional UPDATE from `queued` (api/services/run_store.claim).
"""

from __future__ import annotations

from celery import Celery

TASK_NAME = "dtma.execute_run"
# Seconds before Redis hands an unacknowledged task to another worker; a redelivery of a
# run that is executing or ended is a no-op.
VISIBILITY_TIMEOUT = 120


def make_celery(broker_url: str, queue: str) -> Celery:
    app = Celery("dtma", broker=broker_url)
    app.conf.update(
        task_default_queue=queue,
        task_acks_late=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
        worker_hijack_root_logger=False,
        task_serializer="json",
        accept_content=["json"],
    )
    return app
