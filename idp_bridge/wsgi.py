"""The WSGI application: `gunicorn -c gunicorn.conf.py idp_bridge.wsgi:app`, or any WSGI server.

Settings come from IDP_BRIDGE_CONFIG and IDP_BRIDGE_* as for `idp-bridge serve`. Unlike `serve`, it never
migrates: run `idp-bridge db upgrade` first (the deployment's migration step). On a database whose schema is not
current it refuses to start, saying so, instead of serving a schema it does not know.
"""

from __future__ import annotations

from idp_bridge.server import application

app = application()
