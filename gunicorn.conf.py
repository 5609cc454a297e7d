"""gunicorn settings for `gunicorn -c gunicorn.conf.py idp_bridge.wsgi:app`.

Environment: GUNICORN_BIND (default 127.0.0.1:8080; 0.0.0.0:8080 in a container), WEB_CONCURRENCY (worker
processes, default 2), GUNICORN_THREADS (threads per worker, default 8), and the service's own IDP_BRIDGE_*.
Everything else is what `idp-bridge serve` uses (idp_bridge/server.py): gthread workers, an access log with invite
tokens, login codes and credentials redacted, and metrics shared by every worker. Before any worker starts, the
master refuses a database whose schema is not current (run `idp-bridge db upgrade` first) and a shared database
without an explicit secret key.
"""

import os

from idp_bridge.server import gunicorn_config

globals().update(gunicorn_config(os.environ))
