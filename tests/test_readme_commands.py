"""Every command the README shows is run by a test as written, or is listed here with the reason it cannot run on a
test machine and the test that checks it instead.

The README's commands are the commands of its ```sh blocks, the lines of its CLI block, and every inline code span
that starts with a program (`make …`, `idp-bridge …`, `python …`, `docker …`) or with an idp-bridge command (`db
current`, `serve --no-worker`: the rest of a sentence about idp-bridge). Who covers them:
- ```sh blocks: tests/test_readme_walkthrough.py runs each of their commands, matched to one expectation there;
- the CLI block: tests/test_readme_cli.py compares each line with the command tree;
- a span: the one CLAIMS entry whose pattern it matches. That entry names the test that runs the command, which
  must exist and whose module must show how it runs it; `cannot_run` says why a command does not run here, and
  then `agrees` compares the command with the file it is about (Dockerfile, compose file, manifests, pyproject.toml).
  Commands no other test runs as written run in test_the_commands_in_the_prose_run_as_written, below.
A span that names an idp-bridge command must also name a real command with real options.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import re
import shlex
import signal
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import yaml

from idp_bridge.cli import cli
from tests.test_readme_cli import options_of, resolve
from tests.test_readme_walkthrough import DEVELOPMENT, SECTIONS, section, split_commands, step_of
from tests.workdir import ROOT, checkout_dir, child_env, free_ports

README = ROOT / "README.md"
PROGRAMS = ("idp-bridge", "make", "python", "python3", "pip", "docker", "kubectl", "gunicorn", "alembic", "ss",
            "curl", "pytest")
FENCE = re.compile(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
COMMAND_TIMEOUT_S = 60.0
# bench/link_timing.py times 8,000 requests: well under a minute on an idle 2-core machine.
LINK_TIMING_TIMEOUT_S = 300.0
SERVER_TIMEOUT_S = 90.0
PROSE_TEST = "tests/test_readme_commands.py::test_the_commands_in_the_prose_run_as_written"
WALKTHROUGH = ("tests/test_readme_walkthrough.py::"
               "test_every_command_of_the_quick_start_and_the_http_api_runs_as_written_on_another_port")
DEVELOPMENT_TEST = "tests/test_readme_walkthrough.py::test_every_command_of_the_development_section_runs_as_written"
DEPLOY = "tests/test_deploy.py::"


# Reading the README.


def headings_of(text: str) -> list[tuple[int, str]]:
    return [(m.start(), m.group(0)) for m in re.finditer(r"^## .+$", text, re.MULTILINE)]


def fenced_blocks() -> list[tuple[str, str, str]]:
    """(section heading, language, body) of every fenced block."""
    text = README.read_text()
    heads = headings_of(text)
    found = []
    for match in FENCE.finditer(text):
        heading = [name for start, name in heads if start < match.start()][-1]
        found.append((heading, match.group(1), match.group(2)))
    return found


def code_spans() -> list[str]:
    """Every inline code span outside the fenced blocks, its whitespace (line breaks) collapsed."""
    prose = FENCE.sub("", README.read_text())
    return [" ".join(span.split()) for span in re.findall(r"`([^`\n]+(?:\n[^`\n]+)?)`", prose)]


def command_spans() -> list[str]:
    """The spans that are commands: a program and at least one word after it."""
    return [span for span in code_spans()
            if len(span.split()) > 1 and (span.split()[0] in PROGRAMS or span.split()[0].startswith(".venv/bin/"))]


def cli_spans() -> list[str]:
    """The spans that name an idp-bridge command, written out with `idp-bridge` in front."""
    spans = []
    for span in code_spans():
        words = span.split()
        if words[0] == "idp-bridge" and len(words) > 1:
            spans.append(span)
        elif words[0] in cli.commands and (len(words) > 1 or not isinstance(cli.commands[words[0]], click.Group)):
            # `serve`, `worker`, or a group with more words: `db current`, `domain verify contoso.com --org acme`.
            spans.append(f"idp-bridge {span}")
    return spans


# Checks of a command against the file it is about.


def argv(span: str) -> list[str]:
    return shlex.split(span)


def dockerfile_cmd(span: str) -> None:
    from tests.test_deploy import read_dockerfile
    assert read_dockerfile().cmd == argv(span)


def dockerfile_healthcheck(span: str) -> None:
    from tests.test_deploy import read_dockerfile
    assert read_dockerfile().healthcheck == argv(span)


def compose_services() -> dict[str, dict[str, object]]:
    services: dict[str, dict[str, object]] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return services


def compose_command(service: str) -> Callable[[str], None]:
    def check(span: str) -> None:
        assert compose_services()[service]["command"] == argv(span), service
    return check


def migrates(span: str) -> None:
    from tests.test_deploy import pod_spec, workload
    compose_command("migrate")(span)
    container = pod_spec(workload("Job", "migrate"))["containers"][0]
    assert container["command"] + container.get("args", []) == argv(span)


def worker_liveness(span: str) -> None:
    from tests.test_deploy import pod_spec, workload
    container = pod_spec(workload("Deployment", "worker"))["containers"][0]
    assert container["livenessProbe"]["exec"]["command"] == argv(span)
    healthcheck = compose_services()["worker"]["healthcheck"]
    assert isinstance(healthcheck, dict) and healthcheck["test"] == ["CMD", *argv(span)]


def image_built_here(span: str) -> None:
    """`docker build -t idp-bridge .`: the Dockerfile is at the root, and the compose services run that image."""
    tag = argv(span)[argv(span).index("-t") + 1]
    assert argv(span)[-1] == "." and (ROOT / "Dockerfile").is_file()
    from tests.test_deploy import ours
    mine = ours(compose_services())
    assert mine and all(str(svc["image"]).split(":")[0] == tag and svc["build"] == "." for svc in mine.values())


def compose_builds(span: str) -> None:
    assert argv(span)[:3] == ["docker", "compose", "up"] and "--build" in argv(span)
    from tests.test_deploy import ours
    assert all(svc.get("build") == "." for svc in ours(compose_services()).values())


def kustomization(span: str) -> None:
    folder = ROOT / argv(span)[argv(span).index("-k") + 1]
    assert (folder / "kustomization.yaml").is_file()


def migrate_job(span: str) -> None:
    from tests.test_deploy import kinds
    name = argv(span)[-1].removeprefix("job/")
    assert "--for=condition=complete" in argv(span)
    assert name in {doc["metadata"]["name"] for doc in kinds("Job")}


def redis_extra(span: str) -> None:
    extra = re.fullmatch(r"idp-bridge\[(\w+)\]", argv(span)[-1])
    assert extra is not None
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("redis") for req in extras[extra.group(1)])
    assert f'"idp-bridge[{extra.group(1)}]"' in (ROOT / "Dockerfile").read_text(), "the image has it"


def make_recipe(target: str, line: str) -> list[str]:
    dry = subprocess.run(["make", "-n", target], cwd=ROOT, env=child_env(), capture_output=True, text=True,
                         timeout=COMMAND_TIMEOUT_S, check=False)
    assert dry.returncode == 0, dry.stderr
    assert line in dry.stdout.splitlines(), dry.stdout
    return dry.stdout.splitlines()


def run_recipe(span: str) -> None:
    """`make run` runs `idp-bridge serve --host 127.0.0.1 --port 8080` (the walkthrough runs `make run`)."""
    recipe = make_recipe("run", ".venv/bin/idp-bridge serve --host 127.0.0.1 --port 8080")
    assert any(line.startswith(f".venv/bin/{span}") for line in recipe), recipe


def bench_recipe(span: str) -> None:
    make_recipe(argv(span)[1], ".venv/bin/python bench/bulk_invite.py")
    assert (ROOT / "bench" / "bulk_invite.py").is_file()


@dataclass(frozen=True)
class Claim:
    """Who covers the README commands `pattern` matches (the whole span, whitespace collapsed)."""

    pattern: str
    test: str
    shows: str = ""
    cannot_run: str = ""
    agrees: Callable[[str], None] | None = None


CLAIMS = (
    Claim(r"make demo( PORT=8081 OP_PORT=9081)?",
          "tests/e2e/test_demo.py::test_make_demo_prints_a_link_that_signing_in_at_the_op_redeems_and_ctrl_c_stops_both",
          shows=r'\["make", "demo", f"PORT=\{port\}", f"OP_PORT=\{op_port\}"\]'),
    Claim(r"make run( PORT=\d+)?", WALKTHROUGH, shows=r'\["make", "run", f"PORT=\{walk\.port\}"\]'),
    Claim(r"idp-bridge serve( --host 127\.0\.0\.1 --port 8080)?", WALKTHROUGH,
          shows=r'\["make", "run", f"PORT=', agrees=run_recipe),
    Claim(r"make test", WALKTHROUGH, shows=r'\["make", "-n", "test"\]'),
    Claim(r"make translations( NEW=fr)?",
          "tests/test_translations.py::test_make_translations_runs_as_the_readme_writes_it",
          shows=r'\("make translations NEW=fr", "make translations"\)'),
    Claim(r"python bench/link_timing\.py", PROSE_TEST),
    Claim(r"idp-bridge domain add contoso\.com --org acme", PROSE_TEST),
    Claim(r"alembic upgrade head", PROSE_TEST),
    Claim(r"idp-bridge worker",
          DEPLOY + "test_compose_migrates_then_serves_and_works_with_the_commands_and_environment_it_gives",
          shows=r'worker\["command"\]', agrees=compose_command("worker")),
    Claim(r"idp-bridge worker --metrics-port 9464", PROSE_TEST),
    Claim(r"idp-bridge api-key create --org acme --permission scim:provision --name entra", PROSE_TEST),
    Claim(r"idp-bridge graph subscribe",
          "tests/webhooks/test_graph_notifications.py::test_the_cli_subscribes_to_users_with_our_client_state_within_graphs_limit",
          shows=r'\["graph", "subscribe"'),
    Claim(r"python -m idp_bridge\.config_reference", PROSE_TEST),
    Claim(r"idp-bridge serve --port 9000", PROSE_TEST),
    Claim(r"idp-bridge invite import",
          "tests/test_cli_import.py::test_a_clean_file_is_imported_with_a_summary_and_exit_code_zero",
          shows=r'\["invite", "import"'),
    Claim(r"docker build -t idp-bridge \.",
          DEPLOY + "test_the_image_is_built_in_stages_and_runs_serve_as_a_user_that_is_not_root",
          cannot_run="no Docker on a test machine: the Dockerfile's stages, user and copied files are read instead, "
                     "and its command and healthcheck run here",
          agrees=image_built_here),
    Claim(r"idp-bridge serve --host 0\.0\.0\.0",
          DEPLOY + "test_the_image_command_serves_and_its_healthcheck_passes", shows=r"image\.cmd",
          agrees=dockerfile_cmd),
    Claim(r"python -m idp_bridge\.healthcheck http://127\.0\.0\.1:8080/readyz",
          DEPLOY + "test_the_image_command_serves_and_its_healthcheck_passes", shows=r"image\.healthcheck",
          agrees=dockerfile_healthcheck),
    Claim(r"python -m idp_bridge\.healthcheck --worker",
          DEPLOY + "test_kubernetes_migrates_with_its_job_then_serves_and_works_with_its_probes",
          shows=r'jobs\["livenessProbe"\]\["exec"\]\["command"\]', agrees=worker_liveness),
    Claim(r"pip install",
          "tests/test_wheel.py::test_the_installed_wheel_serves_outside_the_checkout_with_the_platform_roles_preset",
          shows=r'"-m", "pip", "--python", str\(python\), "install"'),
    Claim(r"pip install 'idp-bridge\[redis\]'",
          "tests/test_shared_pacing.py::test_open_paces_follows_the_rate_limit_storage_setting",
          cannot_run="it installs from the package index, which tests do not reach: the extra is checked in "
                     "pyproject.toml and the Dockerfile, and the Redis client it brings runs against a real Redis",
          agrees=redis_extra),
    Claim(r"idp-bridge db upgrade",
          DEPLOY + "test_compose_migrates_then_serves_and_works_with_the_commands_and_environment_it_gives",
          shows=r'migrate\["command"\]', agrees=migrates),
    Claim(r"gunicorn -c gunicorn\.conf\.py idp_bridge\.wsgi:app",
          DEPLOY + "test_compose_migrates_then_serves_and_works_with_the_commands_and_environment_it_gives",
          shows=r'serve\["command"\]', agrees=compose_command("serve")),
    Claim(r"docker compose up --build",
          DEPLOY + "test_compose_migrates_then_serves_and_works_with_the_commands_and_environment_it_gives",
          cannot_run="no Docker on a test machine: each of our services' command, environment and healthcheck "
                     "runs here, and the other images' wiring to ours is checked",
          agrees=compose_builds),
    Claim(r"kubectl apply -k deploy/kubernetes",
          DEPLOY + "test_the_kustomization_lists_every_manifest_and_names_the_image_the_pods_run",
          cannot_run="no Kubernetes cluster on a test machine: the kustomization's resources and images are "
                     "checked, and the pods' commands, environments and probes run here",
          agrees=kustomization),
    Claim(r"kubectl wait --for=condition=complete job/idp-bridge-migrate",
          DEPLOY + "test_kubernetes_migrates_with_its_job_then_serves_and_works_with_its_probes",
          cannot_run="no Kubernetes cluster on a test machine: the Job's command runs first here, and serve's "
                     "pod command refuses an older schema",
          agrees=migrate_job),
    Claim(r"ss -ltnp 'sport = :8080'", PROSE_TEST),
    Claim(r"make bench", DEVELOPMENT_TEST,
          cannot_run="a benchmark of a minute or so whose exit status is a timing target of the machine it runs on "
                     "(tests never assert wall-clock time): its recipe is checked, and `make lint` type-checks "
                     "bench/",
          agrees=bench_recipe),
    Claim(r"pytest -m live",
          "tests/provisioning/test_keycloak_live.py::test_live_a_new_email_gets_one_account_with_setup_actions",
          shows=r"pytest\.mark\.live"),
)


def claims_of(span: str) -> list[Claim]:
    return [claim for claim in CLAIMS if re.fullmatch(claim.pattern, span)]


def covering_test(node: str) -> Callable[..., object]:
    path, name = node.split("::")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    function: object = getattr(module, name, None)
    assert inspect.isfunction(function) and name.startswith("test_"), f"{node}: no such test"
    return function


# The checks.


def test_every_shell_block_is_one_the_walkthrough_runs_and_the_only_other_blocks_are_the_cli_and_toml() -> None:
    walked = (*SECTIONS, DEVELOPMENT)
    kinds: dict[str, int] = {}
    for heading, language, body in fenced_blocks():
        kinds[language] = kinds.get(language, 0) + 1
        if language == "sh":
            assert heading in walked, f"a ```sh block under {heading} that no test runs"
            assert body.strip() in section(README.read_text(), heading)
            for command in split_commands(body):
                step_of(command)
        elif language == "":
            assert heading == "## CLI", f"a fenced block without a language under {heading}"
        else:
            assert language == "toml", f"a ```{language} block under {heading}: is it commands?"
            tomllib.loads(body)
    assert kinds.get("sh", 0) >= 5 and kinds.get("", 0) == 1


def test_every_command_in_the_prose_is_claimed_by_exactly_one_test_that_exists() -> None:
    spans = command_spans()
    assert len(spans) > 20
    used = set()
    for span in spans:
        found = claims_of(span)
        assert len(found) == 1, f"README command `{span}` is claimed by {len(found)} entries of CLAIMS (one needed)"
        used.add(found[0].pattern)
    assert [claim.pattern for claim in CLAIMS if claim.pattern not in used] == [], "claims of no README command"


@pytest.mark.parametrize("claim", CLAIMS, ids=[claim.pattern for claim in CLAIMS])
def test_each_claim_names_a_test_that_runs_or_checks_its_command(claim: Claim) -> None:
    function = covering_test(claim.test)
    spans = [span for span in command_spans() if re.fullmatch(claim.pattern, span)]
    if claim.test == PROSE_TEST:
        assert set(spans) <= {step.command for step in RUN_HERE} | set(BACKGROUND), "the prose test runs it"
        return
    if claim.cannot_run:
        assert claim.agrees is not None, "a command that cannot run is checked against its file"
    else:
        assert claim.shows, "how the test runs the command"
    if claim.shows:
        assert re.search(claim.shows, inspect.getsource(inspect.getmodule(function) or function)), \
            f"{claim.test}'s module does not show {claim.shows!r}"
    if claim.agrees is not None:
        for span in spans:
            claim.agrees(span)


def test_the_claim_checks_fail_on_a_command_that_differs_from_its_file() -> None:
    for check, wrong in ((dockerfile_cmd, "idp-bridge serve --host 127.0.0.1"),
                         (migrates, "idp-bridge db downgrade -1"),
                         (migrate_job, "kubectl wait --for=condition=complete job/idp-bridge-migration"),
                         (redis_extra, "pip install 'idp-bridge[memcached]'"),
                         (run_recipe, "idp-bridge serve --port 9000")):
        with pytest.raises((AssertionError, KeyError)):
            check(wrong)


def check_cli_span(span: str) -> None:
    path, command, parts = resolve(span)
    assert path and not isinstance(command, click.Group), f"`{span}` names no idp-bridge command"
    options = options_of(command)
    for part in parts:
        if part.startswith("-"):
            assert part in options, f"`{span}`: {' '.join(path)} has no option {part}"


def test_every_span_naming_an_idp_bridge_command_names_a_real_one_with_real_options() -> None:
    spans = cli_spans()
    assert "idp-bridge serve --no-worker" in spans and "idp-bridge db current" in spans
    for span in spans:
        check_cli_span(span)


@pytest.mark.parametrize("span", ["idp-bridge serve --no-workers", "idp-bridge db currant", "idp-bridge domain",
                                  "idp-bridge worker --metrics-port 9464 --once --twice"])
def test_the_span_check_catches_a_command_or_option_that_does_not_exist(span: str) -> None:
    with pytest.raises(AssertionError):
        check_cli_span(span)


# Running the commands no other test runs as written.


@dataclass
class Here:
    """A README command run in a stand-in checkout, with `idp-bridge`, `python`, `alembic` on PATH from .venv."""

    work: Path
    env: dict[str, str]
    ports: dict[str, int]

    def as_run_here(self, command: str) -> str:
        for written, port in self.ports.items():
            command = re.sub(rf"(?<![\d.]){written}(?!\d)", str(port), command)
        return command

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", self.as_run_here(command)], cwd=self.work, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    @contextlib.contextmanager
    def running(self, command: str, url: str) -> Iterator[subprocess.Popen[bytes]]:
        """The command in the background until `url` (on a port of `ports`) answers 200."""
        log = self.work / f"{command.split()[1]}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(["bash", "-c", f"exec {self.as_run_here(command)}"], cwd=self.work,
                                       env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        try:
            deadline = time.monotonic() + SERVER_TIMEOUT_S
            while True:
                assert process.poll() is None, f"{command} exited:\n{log.read_text()}"
                with contextlib.suppress(urllib.error.URLError, OSError), \
                        urllib.request.urlopen(self.as_run_here(url), timeout=2) as response:
                    if response.status == 200:
                        break
                assert time.monotonic() < deadline, f"{command}: {url} not ready:\n{log.read_text()}"
                time.sleep(0.3)
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@dataclass(frozen=True)
class RunHere:
    command: str
    check: Callable[[Here, subprocess.CompletedProcess[str]], None]
    timeout: float = COMMAND_TIMEOUT_S


def upgraded(here: Here, done: subprocess.CompletedProcess[str]) -> None:
    assert (here.work / "instance" / "idp-bridge.sqlite3").is_file(), done.stderr
    check = here.run(".venv/bin/idp-bridge db check")
    assert check.returncode == 0, check.stdout + check.stderr


def wrote_reference(here: Here, done: subprocess.CompletedProcess[str]) -> None:
    assert done.stdout.strip() == "wrote docs/configuration.md", done.stdout
    assert (here.work / "docs/configuration.md").read_text() == (ROOT / "docs/configuration.md").read_text()


def made_scim_key(here: Here, done: subprocess.CompletedProcess[str]) -> None:
    assert done.stdout.strip().startswith("ibk_"), done.stdout
    listed = here.run(".venv/bin/idp-bridge api-key list --org acme --json")
    keys = json.loads(listed.stdout)
    assert [(key["name"], key["permissions"]) for key in keys] == [("entra", ["scim:provision"])], keys


def printed_record(here: Here, done: subprocess.CompletedProcess[str]) -> None:
    assert re.fullmatch(r"_idp-bridge-challenge\.contoso\.com TXT idp-bridge-verification=[\w-]{20,}\n", done.stdout), \
        done.stdout


def timed_links(here: Here, done: subprocess.CompletedProcess[str]) -> None:
    kinds = re.findall(r"^\s+(\w+)\s+median [\d.]+ ms", done.stdout, re.MULTILINE)
    assert sorted(kinds) == ["expired", "revoked", "tampered", "unknown"], done.stdout


RUN_HERE = (
    RunHere("alembic upgrade head", upgraded),
    RunHere("python -m idp_bridge.config_reference", wrote_reference),
    RunHere("idp-bridge api-key create --org acme --permission scim:provision --name entra", made_scim_key),
    RunHere("idp-bridge domain add contoso.com --org acme", printed_record),
    RunHere("python bench/link_timing.py", timed_links, timeout=LINK_TIMING_TIMEOUT_S),
)
# Servers, run in the background by the test itself (and `ss`, which names the one listening).
BACKGROUND = ("idp-bridge serve --port 9000", "ss -ltnp 'sport = :8080'", "idp-bridge worker --metrics-port 9464")


@pytest.fixture
def here(tmp_path: Path) -> Here:
    work = checkout_dir(tmp_path)
    env = child_env(PATH=f"{work / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    serve_port, metrics_port = free_ports(2)
    # The README's 8080 (what ss looks for) and 9000 (where serve goes) are one server here.
    return Here(work, env, {"8080": serve_port, "9000": serve_port, "9464": metrics_port})


@pytest.mark.slow
def test_the_commands_in_the_prose_run_as_written(here: Here) -> None:
    spans = command_spans()
    assert set(BACKGROUND) <= set(spans), "a server command is no longer in the README"
    for step in RUN_HERE:
        assert step.command in spans, f"`{step.command}` is no longer in the README"
        if step.command.startswith("idp-bridge api-key"):
            created = here.run(".venv/bin/idp-bridge org create acme --name Acme")
            assert created.returncode == 0, created.stderr
        done = here.run(step.command, timeout=step.timeout)
        assert done.returncode == 0, f"$ {step.command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        step.check(here, done)

    port = here.ports["9000"]
    with here.running("idp-bridge serve --port 9000", "http://127.0.0.1:9000/readyz") as serve:
        # Without public_url the links follow the port serve was given.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=10) as response:
            assert json.load(response)["servers"][0]["url"].startswith(f"http://127.0.0.1:{port}")
        found = here.run("ss -ltnp 'sport = :8080'")
        assert found.returncode == 0, found.stderr
        pids = {int(pid) for pid in re.findall(r"pid=(\d+)", found.stdout)}
        assert f":{port} " in found.stdout and pids, found.stdout
        groups = set()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(pid))
        assert serve.pid in groups, f"ss names {pids}, not serve ({serve.pid}):\n{found.stdout}"

    with here.running("idp-bridge worker --metrics-port 9464", "http://127.0.0.1:9464/metrics"), \
            urllib.request.urlopen(f"http://127.0.0.1:{here.ports['9464']}/metrics", timeout=10) as response:
        assert b"idp_bridge_jobs_queued" in response.read()
