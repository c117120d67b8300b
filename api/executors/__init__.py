"""Executing runs past one machine (DTMA_EXECUTOR=celery): the API stores a run and sends
only its id through the broker; a `dtma-console worker` claims it, reads what it needs
(the sealed extravars, the toolbox's sealed SSH key) from the shared database, unseals it
with its master key and runs the playbook through runner/; events go to the database in
order and out over Redis pub/sub to whichever console process streams them.

    bus.py         Redis channels: a run's event/end notices, cancel requests
    celery_app.py  the Celery app, its task name and queue defaults
    remote.py      CeleryRunManager: the run manager of API processes in celery mode
    worker.py      the worker: claim, execute under a lease, stop on cancel
"""
