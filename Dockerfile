# syntax=docker/dockerfile:1
# The idp-bridge image: `docker build -t idp-bridge .` (see README.md, "Deploy").
# Runs `idp-bridge serve` (migrates, serves, and runs a job worker beside it); override the command for
# `gunicorn -c gunicorn.conf.py idp_bridge.wsgi:app`, `idp-bridge worker` or `idp-bridge db upgrade`.
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY idp_bridge ./idp_bridge
COPY providers ./providers
COPY webhooks ./webhooks
# The project's wheel and the wheels of everything it needs, Redis client included, for the runtime stage.
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[redis]"

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/idp-bridge \
    PATH=/opt/idp-bridge/bin:$PATH
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/idp-bridge \
    && /opt/idp-bridge/bin/pip install --no-cache-dir --no-index --find-links /wheels "idp-bridge[redis]"
RUN useradd --system --uid 10001 --home-dir /srv/idp-bridge --shell /usr/sbin/nologin idp-bridge \
    && mkdir -p /srv/idp-bridge/instance \
    && chown idp-bridge /srv/idp-bridge/instance \
    && chmod 0700 /srv/idp-bridge/instance
WORKDIR /srv/idp-bridge
COPY gunicorn.conf.py ./
# The instance dir holds the SQLite database of a single-container set-up, the generated secret key when none
# is given, the file mail outbox and the metrics files shared by this container's processes.
ENV IDP_BRIDGE_INSTANCE_DIR=/srv/idp-bridge/instance \
    GUNICORN_BIND=0.0.0.0:8080
VOLUME ["/srv/idp-bridge/instance"]
USER 10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-m", "idp_bridge.healthcheck", "http://127.0.0.1:8080/readyz"]
CMD ["idp-bridge", "serve", "--host", "0.0.0.0"]
