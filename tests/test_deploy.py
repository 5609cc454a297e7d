"""The deployment files run on this machine, so they cannot rot: Dockerfile, docker-compose.yml and
deploy/kubernetes/. Every command line and environment they give our image is parsed out of the file and run here.

Only what cannot work outside a container is changed, always the same way:
- the database URL's host (`postgres`, another container), user, password and database name become those of a
  fresh, empty test database: a PostgreSQL database on 127.0.0.1 (IDP_BRIDGE_TEST_DB=postgres) or a SQLite file;
- listen addresses (`--host 0.0.0.0`, GUNICORN_BIND=0.0.0.0:8080) become 127.0.0.1 and a free port, and so do
  the healthcheck URLs and probe ports that name the container's port 8080;
- absolute paths inside the container (/etc/idp-bridge, /srv/idp-bridge) live under a temporary root, filled
  from the compose volumes, the ConfigMap and what the Dockerfile copies into its WORKDIR;
- the programs (idp-bridge, gunicorn, python) are this Python environment's, importing this checkout.
Images that are not ours (PostgreSQL, Mailpit, Keycloak) are not run; their wiring to ours is checked instead.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from idp_bridge.settings import load_settings
from tests.conftest import BACKEND, PG_ADMIN_URL
from tests.readonly_disk import free_port, stop

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy/kubernetes"
CONTAINER_PORT = 8080
OUR_IMAGE = re.compile(r"^idp-bridge(:|$)")
BIN = Path(sys.executable).parent
# Variables of this test run that must not reach a process started "in a container".
OUTSIDE_ONLY = ("IDP_BRIDGE_", "PROMETHEUS_", "GUNICORN_", "WEB_CONCURRENCY")

pytestmark = pytest.mark.slow


# Reading the files.


@dataclass
class Dockerfile:
    """The final stage of the Dockerfile: what a container of the image starts with."""

    stages: int = 0
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    copies: list[tuple[list[str], str]] = field(default_factory=list)
    # What any stage copies from the build context.
    context: list[str] = field(default_factory=list)
    user: str = "root"
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)


def instructions(source: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical = ""
    for line in source.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            logical += stripped[:-1] + " "
            continue
        logical += stripped
        word, _, rest = logical.strip().partition(" ")
        yield word.upper(), rest.strip()
        logical = ""


def read_dockerfile() -> Dockerfile:
    image = Dockerfile()
    for word, args in instructions((ROOT / "Dockerfile").read_text()):
        if word == "FROM":
            image = Dockerfile(stages=image.stages + 1, context=image.context)
        elif word == "ENV":
            image.env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
        elif word == "WORKDIR":
            image.workdir = args
        elif word == "COPY" and "--from" not in args:
            *sources, target = shlex.split(args)
            image.copies.append((sources, target))
            image.context.extend(sources)
        elif word == "USER":
            image.user = args
        elif word == "CMD":
            image.cmd = json.loads(args)
        elif word == "HEALTHCHECK":
            image.healthcheck = json.loads(args.split(" CMD ", 1)[1])
    return image


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def ours(services: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The compose services that run our image."""
    return {name: svc for name, svc in services.items() if OUR_IMAGE.match(str(svc.get("image", "")))}


def manifests() -> dict[str, list[dict[str, Any]]]:
    """Every Kubernetes manifest file with its documents."""
    return {path.name: [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
            for path in sorted(KUBERNETES.glob("*.yaml"))}


def kinds(kind: str) -> list[dict[str, Any]]:
    return [doc for docs in manifests().values() for doc in docs if doc.get("kind") == kind]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def workload(kind: str, component: str) -> dict[str, Any]:
    found = [doc for doc in kinds(kind) if doc["metadata"]["labels"]["app.kubernetes.io/component"] == component]
    assert len(found) == 1, f"one {kind} for {component}"
    return found[0]


# Running them here.


@dataclass
class Container:
    """A temporary root standing in for a container's file system, and the way processes are started in it."""

    root: Path
    database_url: str
    port: int
    logs: list[Path] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def path(self, inside: str) -> Path:
        return self.root / inside.lstrip("/")

    def put(self, inside: str, content: bytes) -> None:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)

    def value(self, name: str, value: str) -> str:
        if name == "IDP_BRIDGE_DATABASE_URL":
            return self.database_url
        if name == "GUNICORN_BIND":
            assert value == f"0.0.0.0:{CONTAINER_PORT}", "the container listens on every address, port 8080"
            return f"127.0.0.1:{self.port}"
        if value.startswith("/"):
            return str(self.path(value))
        return value

    def environ(self, image: Dockerfile, env: dict[str, str]) -> dict[str, str]:
        outside = {k: v for k, v in os.environ.items() if not k.startswith(OUTSIDE_ONLY)}
        inside = {name: self.value(name, str(value)) for name, value in (image.env | env).items()
                  if name not in ("PATH", "VIRTUAL_ENV")}
        return outside | {"HOME": str(self.root), "PYTHONPATH": str(ROOT)} | inside

    def argv(self, command: list[str]) -> list[str]:
        program, *args = command
        local = BIN / program
        assert local.exists(), f"{program} is not a program this package installs"
        out = [str(local)]
        for i, arg in enumerate(args):
            if arg == "0.0.0.0" and args[i - 1] == "--host":
                out += ["127.0.0.1"]
            else:
                out.append(arg.replace(f"127.0.0.1:{CONTAINER_PORT}", f"127.0.0.1:{self.port}"))
        if "serve" in args and "--port" not in args:
            out += ["--port", str(self.port)]
        return out

    def run(self, command: list[str], image: Dockerfile, env: dict[str, str],
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(command), env=self.environ(image, env), cwd=self.path(image.workdir),
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def start(self, command: list[str], image: Dockerfile, env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = self.root.parent / f"{len(self.logs)}-{Path(command[0]).name}.log"
        self.logs.append(log)
        with open(log, "wb") as out:
            proc = subprocess.Popen(self.argv(command), env=self.environ(image, env), cwd=self.path(image.workdir),
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def until_healthy(self, command: list[str], image: Dockerfile, env: dict[str, str],
                      proc: subprocess.Popen[bytes], *, attempts: int = 150) -> None:
        """Run a healthcheck command (at most `attempts` times, 0.2 s apart) until it exits 0."""
        result = None
        for _ in range(attempts):
            assert proc.poll() is None, f"the process exited ({proc.returncode}):\n{self.output()}"
            result = self.run(command, image, env, timeout=30)
            if result.returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"never healthy: {result.stderr if result else ''}\n{self.output()}")

    def get(self, path: str) -> int:
        """The status of GET path on the server's port (0 when nothing answers)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"http://127.0.0.1:{self.port}{path}", timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0  # not listening yet

    def output(self) -> str:
        return "\n".join(log.read_text(errors="replace")[-3000:] for log in self.logs)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[str]:
    """A database no migration has touched: on PostgreSQL a new database on 127.0.0.1, else a SQLite file."""
    if BACKEND != "postgres":
        yield f"sqlite:///{tmp_path / 'deploy.sqlite3'}"
        return
    name = f"idpb_deploy_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def container(tmp_path: Path, empty_database: str) -> Iterator[Container]:
    """A root laid out as the image lays out its final stage: the WORKDIR with what the Dockerfile copies there."""
    box = Container(tmp_path / "root", empty_database, free_port())
    image = read_dockerfile()
    for sources, target in image.copies:
        folder = target if target.startswith("/") else f"{image.workdir}/{target}"
        for source in sources:
            # COPY a b ./ copies into the folder; COPY a name copies to that name.
            inside = f"{folder}/{Path(source).name}" if target.endswith("/") else folder
            box.put(inside, (ROOT / source).read_bytes())
    box.path(image.workdir).mkdir(parents=True, exist_ok=True)
    yield box
    box.stop_all()


def check_database_url(url: str, hosts: set[str]) -> None:
    """The URL the files give: PostgreSQL through psycopg on a host they name (rewritten for this machine)."""
    parts = make_url(url)
    assert parts.drivername == "postgresql+psycopg"
    assert parts.host in hosts, f"{parts.host} is not one of {sorted(hosts)}"


# The Dockerfile.


def test_the_image_is_built_in_stages_and_runs_serve_as_a_user_that_is_not_root() -> None:
    image = read_dockerfile()
    assert image.stages >= 2, "a build stage makes the wheel, a slim runtime stage installs it"
    assert image.user not in ("", "0", "root"), "the runtime user is not root"
    assert image.cmd[:2] == ["idp-bridge", "serve"] and image.cmd[image.cmd.index("--host") + 1] == "0.0.0.0"
    assert urlsplit(image.healthcheck[-1]).path in ("/healthz", "/readyz")
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    assert "idp_bridge" in image.context and "gunicorn.conf.py" in image.context
    for source in image.context:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert source not in ignored, f"COPY {source} is excluded by .dockerignore"


def test_the_image_command_serves_and_its_healthcheck_passes(container: Container) -> None:
    image = read_dockerfile()
    # The image alone: SQLite in its instance dir, the job worker run by serve beside the web workers.
    proc = container.start(image.cmd, image, {})
    container.until_healthy(image.healthcheck, image, {}, proc)
    assert container.get("/healthz") == 200
    assert container.path(image.env["IDP_BRIDGE_INSTANCE_DIR"]).joinpath("idp-bridge.sqlite3").exists()


# docker-compose.yml.


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping"
    return {str(k): str(v) for k, v in env.items()}


def mount_volumes(box: Container, service: dict[str, Any]) -> None:
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        box.put(target, (ROOT / source).read_bytes())


def test_compose_migrates_then_serves_and_works_with_the_commands_and_environment_it_gives(
        container: Container) -> None:
    services = compose()["services"]
    image = read_dockerfile()
    mine = ours(services)
    assert {"migrate", "serve", "worker"} <= set(mine)
    for name in ("serve", "worker"):
        assert mine[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert mine["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for service in mine.values():
        check_database_url(compose_env(service)["IDP_BRIDGE_DATABASE_URL"], set(services))
        mount_volumes(container, service)

    serve, worker, migrate = mine["serve"], mine["worker"], mine["migrate"]
    before = container.run(serve["command"], image, compose_env(serve))
    assert before.returncode != 0 and "idp-bridge db upgrade" in before.stderr, before.stderr

    done = container.run(migrate["command"], image, compose_env(migrate))
    assert done.returncode == 0, done.stderr
    assert migrate["healthcheck"] == {"disable": True}, "a one-shot job has no server to check"

    web = container.start(serve["command"], image, compose_env(serve))
    container.until_healthy(serve["healthcheck"]["test"][1:], image, compose_env(serve), web)
    assert serve["healthcheck"]["test"][0] == "CMD"
    assert any(p.endswith(f":{CONTAINER_PORT}") for p in serve["ports"])
    jobs = container.start(worker["command"], image, compose_env(worker))
    container.until_healthy(worker["healthcheck"]["test"][1:], image, compose_env(worker), jobs)
    assert container.get("/readyz") == 200

    # gunicorn.conf.py logs requests as serve does: invite tokens and undocumented query values redacted.
    assert container.get("/invite/tok-4f9a2c7e?code=c0de-77b1") == 404
    for _ in range(50):
        if "/invite/[redacted]" in container.output():
            break
        time.sleep(0.1)
    assert "/invite/[redacted]?code=[redacted]" in container.output()
    assert "tok-4f9a2c7e" not in container.output() and "c0de-77b1" not in container.output()


def test_the_compose_configuration_points_at_the_keycloak_realm_it_imports(tmp_path: Path) -> None:
    services = compose()["services"]
    serve = ours(services)["serve"]
    env = compose_env(serve)
    config = next(v.split(":")[0] for v in serve["volumes"] if v.split(":")[1] == env["IDP_BRIDGE_CONFIG"])
    env = env | {"IDP_BRIDGE_CONFIG": str(ROOT / config), "IDP_BRIDGE_INSTANCE_DIR": str(tmp_path)}
    settings = load_settings(environ=env)
    assert settings.mail_transport == "smtp" and settings.smtp_host in services, "mail goes to the mail catcher"
    provider = settings.providers["keycloak"]

    keycloak = services["keycloak"]
    assert "start-dev" in keycloak["command"] and "--import-realm" in keycloak["command"]
    realm_mount = next(v for v in keycloak["volumes"] if "/opt/keycloak/data/import/" in v)
    realm = json.loads((ROOT / realm_mount.split(":")[0]).read_text())
    assert realm["realm"] == provider["realm"]
    client = next(c for c in realm["clients"] if c["clientId"] == provider["client_id"])
    assert client["secret"] == provider["client_secret"]
    assert not client["publicClient"] and client["serviceAccountsEnabled"] and client["standardFlowEnabled"]
    name = "keycloak"
    assert f"{settings.public_url}/auth/callback/{name}" in client["redirectUris"]
    assert f"{settings.public_url}/invite/*" in client["redirectUris"]
    assert settings.public_url in client["webOrigins"]
    account = next(u for u in realm["users"] if u.get("serviceAccountClientId") == client["clientId"])
    assert {"manage-users", "view-users"} <= set(account["clientRoles"]["realm-management"])
    assert realm["smtpServer"]["host"] in services

    # The browser and the containers reach Keycloak at one address, so they agree on its issuer.
    server = urlsplit(provider["server_url"])
    assert server.hostname in keycloak["networks"]["default"]["aliases"]
    assert server.hostname is not None and server.hostname.endswith(".localhost")
    assert f"--http-port={server.port}" in keycloak["command"]
    assert any(p.endswith(f":{server.port}:{server.port}") for p in keycloak["ports"])
    assert any(p.endswith(f":{urlsplit(settings.public_url).port}:{CONTAINER_PORT}") for p in serve["ports"])


# deploy/kubernetes.


def secret_values() -> dict[str, dict[str, str]]:
    docs = manifests()["secret.example.yaml"]
    return {doc["metadata"]["name"]: doc["stringData"] for doc in docs if doc["kind"] == "Secret"}


def k8s_env(container_spec: dict[str, Any]) -> dict[str, str]:
    """The container's environment, secrets taken from secret.example.yaml."""
    secrets = secret_values()
    env = {}
    for item in container_spec.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        assert ref["key"] in secrets[ref["name"]], f"{ref} is not in secret.example.yaml"
        env[item["name"]] = secrets[ref["name"]][ref["key"]]
    return env


def mount_pod(box: Container, spec: dict[str, Any], container_spec: dict[str, Any]) -> None:
    maps = {doc["metadata"]["name"]: doc["data"] for doc in kinds("ConfigMap")}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in container_spec["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            for key, content in maps[volume["configMap"]["name"]].items():
                box.put(f"{mount['mountPath']}/{key}", content.encode())
        else:
            assert "emptyDir" in volume
            box.path(mount["mountPath"]).mkdir(parents=True, exist_ok=True)


def test_the_kustomization_lists_every_manifest_and_names_the_image_the_pods_run() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {name for name in manifests() if name not in ("kustomization.yaml", "secret.example.yaml")}
    assert listed == present
    images = {image["name"] for image in kustomization["images"]}
    for kind in ("Deployment", "Job"):
        for doc in kinds(kind):
            assert {c["image"] for c in pod_spec(doc)["containers"]} <= images


def test_no_service_link_variable_can_be_taken_for_a_setting() -> None:
    for kind in ("Deployment", "Job"):
        for doc in kinds(kind):
            assert pod_spec(doc)["enableServiceLinks"] is False, doc["metadata"]["name"]
    for service in kinds("Service"):
        # What Kubernetes would inject for it: NAME_SERVICE_HOST, NAME_PORT, NAME_PORT_80_TCP, ...
        prefix = service["metadata"]["name"].upper().replace("-", "_") + "_"
        assert not prefix.startswith("IDP_BRIDGE_"), f"Service {service['metadata']['name']}"
    serve = workload("Deployment", "serve")
    assert kinds("Service")[0]["spec"]["selector"].items() <= serve["spec"]["template"]["metadata"]["labels"].items()


def test_kubernetes_migrates_with_its_job_then_serves_and_works_with_its_probes(container: Container) -> None:
    image = read_dockerfile()
    check_database_url(secret_values()["idp-bridge"]["database-url"], {"postgres"})
    job = workload("Job", "migrate")
    serve = workload("Deployment", "serve")
    worker = workload("Deployment", "worker")
    for doc in (job, serve, worker):
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        mount_pod(container, spec, spec["containers"][0])

    migrate = pod_spec(job)["containers"][0]
    done = container.run(migrate["command"] + migrate.get("args", []), image, k8s_env(migrate))
    assert done.returncode == 0, done.stderr

    web = pod_spec(serve)["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in web["ports"]}
    proc = container.start(web["command"] + web.get("args", []), image, k8s_env(web))
    for probe in ("readinessProbe", "livenessProbe"):
        get = web[probe]["httpGet"]
        assert ports.get(get["port"], get["port"]) == CONTAINER_PORT
        for _ in range(150):
            assert proc.poll() is None, container.output()
            if container.get(get["path"]) == 200:
                break
            time.sleep(0.2)
        assert container.get(get["path"]) == 200, container.output()

    jobs = pod_spec(worker)["containers"][0]
    proc = container.start(jobs["command"] + jobs.get("args", []), image, k8s_env(jobs))
    container.until_healthy(jobs["livenessProbe"]["exec"]["command"], image, k8s_env(jobs), proc)


def test_the_configmap_configuration_loads(tmp_path: Path) -> None:
    (config_map,) = kinds("ConfigMap")
    path = tmp_path / "idp-bridge.toml"
    path.write_text(config_map["data"]["idp-bridge.toml"])
    settings = load_settings(environ={"IDP_BRIDGE_CONFIG": str(path), "IDP_BRIDGE_INSTANCE_DIR": str(tmp_path),
                                      "IDP_BRIDGE_PROVIDERS__KEYCLOAK__CLIENT_SECRET": "x"})
    assert settings.mail_transport == "smtp" and settings.public_url.startswith("https://")
    assert settings.trust_proxy_headers == 1, "behind the Ingress"
    assert settings.providers["keycloak"]["client_id"] == "idp-bridge"


@pytest.mark.parametrize(("name", "value"), [("WEB_CONCURRENCY", "many"), ("GUNICORN_THREADS", "0")])
def test_gunicorn_conf_refuses_a_count_that_is_not_a_whole_number(
        name: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from idp_bridge.server import gunicorn_config

    with pytest.raises(SystemExit) as exit_:
        gunicorn_config({"IDP_BRIDGE_INSTANCE_DIR": str(tmp_path), name: value})
    assert exit_.value.code == 2
    assert f"{name} must be a whole number" in capsys.readouterr().err


def test_gunicorn_conf_runs_gunicorn_with_the_options_of_serve(tmp_path: Path) -> None:
    from idp_bridge.server import gunicorn_config, gunicorn_options

    config = gunicorn_config({"IDP_BRIDGE_INSTANCE_DIR": str(tmp_path), "GUNICORN_BIND": "127.0.0.1:9",
                              "WEB_CONCURRENCY": "3"})
    assert (config["bind"], config["workers"], config["threads"]) == ("127.0.0.1:9", 3, 8)
    shared = gunicorn_options(access_log=True)
    assert {k: config[k] for k in shared} == shared
    assert config["logger_class"] == "idp_bridge.web.redact.RedactingLogger"
