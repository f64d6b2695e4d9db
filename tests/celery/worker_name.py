"""``[core] hostname_callable`` for the Celery tier: the name of the worker that runs a task.

Both test workers run on one machine, so the machine's name would not tell them apart. Each worker
process gets ``CUTOVER_CELERY_WORKER`` (``worker-a`` / ``worker-b``) and this callable as its
hostname callable: the task runner reports it to the API server, which stores it as the task
instance's ``hostname`` (what the grid shows). On separate machines the default, the FQDN, does this.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """``$CUTOVER_CELERY_WORKER`` @ this machine, or the FQDN where it is not set."""
    worker = os.environ.get("CUTOVER_CELERY_WORKER")
    return f"{worker}@{socket.gethostname()}" if worker else socket.getfqdn()
