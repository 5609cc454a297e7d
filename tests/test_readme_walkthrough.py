"""The README's Quick start and HTTP API examples, every command run as written (bash, in a directory that stands
for a fresh checkout) against `make run PORT=<a free port>`, a port other than the default; and the Development
block's commands, run as written in such a directory too (the tests, ruff and mypy over its linked sources).

Each command is matched to exactly one expectation below, and each expectation to a command, so a command added to
those sections fails here until it has one. `curl` commands run unchanged; a `.curlrc` (CURL_HOME) makes curl
also write each HTTP status to stderr, and the expectation names the statuses the command must get. The URLs carry
the README's port 8080, which the test replaces by the port `make run` was given, as the README says to.

Three commands do not run here as such: `make run` is started in the background with `PORT=`; `make demo` runs in
tests/e2e/test_demo.py (it needs Chromium to finish); `make test` is this very suite, so only its recipe is
checked with `make -n`. The README's other commands are claimed in tests/test_readme_commands.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.workdir import ROOT, checkout_dir, child_env, free_ports

README = ROOT / "README.md"
SECTIONS = ("## Quick start", "## HTTP API")
DEVELOPMENT = "## Development"
README_PORT = "8080"
COMMAND_TIMEOUT_S = 60.0
# The Development block runs tests, ruff and mypy (with no cache yet): minutes at most on a loaded 2-core machine.
DEVELOPMENT_TIMEOUT_S = 600.0
SERVE_TIMEOUT_S = 90.0
MAIL_TIMEOUT_S = 30.0
STATUS_MARK = "curl-http-status:"
ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def section(text: str, heading: str) -> str:
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


def is_complete(chunk: str) -> bool:
    """Whether bash reads `chunk` as whole commands (no open quote, $( … ), continuation or here-document)."""
    if chunk.rstrip("\n").endswith("\\"):
        return False
    check = subprocess.run(["bash", "-n"], input=chunk, capture_output=True, text=True, timeout=10, check=False)
    return check.returncode == 0 and not check.stderr.strip()


def split_commands(block: str) -> list[str]:
    """The commands of a shell block, each with its continuation lines and here-document."""
    commands: list[str] = []
    chunk = ""
    for line in block.splitlines(keepends=True):
        if not chunk and (not line.strip() or line.lstrip().startswith("#")):
            continue
        chunk += line
        if is_complete(chunk):
            commands.append(chunk.rstrip("\n"))
            chunk = ""
    assert not chunk, f"an unfinished command at the end of a README block:\n{chunk}"
    return commands


def readme_commands(headings: tuple[str, ...] = SECTIONS) -> list[str]:
    text = README.read_text()
    return [command for heading in headings
            for block in re.findall(r"^```sh\n(.*?)^```", section(text, heading), re.MULTILINE | re.DOTALL)
            for command in split_commands(block)]


@dataclass
class Ran:
    """One command's outcome, and the walkthrough's state after it."""

    command: str
    returncode: int
    stdout: str
    stderr: str
    statuses: list[int]
    variables: dict[str, str]
    walk: Walkthrough

    def json(self) -> Any:
        return json.loads(self.stdout)

    def describe(self) -> str:
        return (f"$ {self.command}\nexit {self.returncode}, HTTP {self.statuses}\nstdout: {self.stdout[-3000:]}\n"
                f"stderr: {self.stderr[-3000:]}")


@dataclass
class Walkthrough:
    work: Path
    port: int
    env: dict[str, str]
    state: Path
    variables: list[str]
    serve: subprocess.Popen[bytes] | None = None
    serve_log: Path | None = None
    seen: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def as_run_here(self, command: str) -> str:
        return command.replace(f"127.0.0.1:{README_PORT}", f"127.0.0.1:{self.port}")

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT_S) -> Ran:
        dump = f"declare -p {' '.join(self.variables)} 2>/dev/null > {self.state}"
        script = f". {self.state}\n{self.as_run_here(command)}\n__status=$?\n{dump}\nexit $__status\n"
        done = subprocess.run(["bash", "-c", script], cwd=self.work, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        statuses = [int(code) for code in re.findall(rf"^{STATUS_MARK}(\d+)$", done.stderr, re.MULTILINE)]
        stderr = re.sub(rf"^{STATUS_MARK}\d+\n", "", done.stderr, flags=re.MULTILINE)
        values = dict(re.findall(r'^declare -\S+ (\w+)="(.*)"$', self.state.read_text(), re.MULTILINE))
        self.seen = values
        return Ran(command, done.returncode, done.stdout, stderr, statuses, values, self)


Check = Callable[[Ran], None]


@dataclass(frozen=True)
class Step:
    """What one README command must do: the HTTP statuses of its curl calls, and a check of its outcome."""

    pattern: str
    statuses: tuple[int, ...] = ()
    check: Check | None = None
    special: str = ""
    timeout: float = COMMAND_TIMEOUT_S

    def matches(self, command: str) -> bool:
        return re.match(self.pattern, command, re.DOTALL) is not None


def link_on_port(ran: Ran, link: object) -> None:
    assert isinstance(link, str) and link.startswith(f"{ran.walk.base}/invite/"), \
        f"the link {link!r} is not on the port serve was given ({ran.walk.port})\n{ran.describe()}"


def created_org(ran: Ran) -> None:
    assert "created organization acme" in ran.stdout, ran.describe()


def made_key(ran: Ran) -> None:
    assert ran.variables.get("KEY", "").startswith("ibk_"), ran.describe()
    assert "audit:read" in ran.stderr, ran.describe()


def echoed_invite(ran: Ran) -> None:
    invite = ran.json()
    link_on_port(ran, invite["link"])
    warnings = invite["warnings"]
    assert isinstance(warnings, list) and any("no identity provider is configured" in w for w in warnings), \
        ran.describe()


def set_variable(name: str) -> Check:
    def check(ran: Ran) -> None:
        assert ID_PATTERN.match(ran.variables.get(name, "")), f"{name} is not an id\n{ran.describe()}"
    return check


def listed_mail(ran: Ran) -> None:
    mails = sorted((ran.walk.work / "instance" / "mail").glob("*.eml"))
    assert [m.name for m in mails] == ran.stdout.split(), ran.describe()
    assert any(f"{ran.walk.base}/invite/".encode() in m.read_bytes() for m in mails), \
        f"no mailed link carries port {ran.walk.port}"


def defined_api(ran: Ran) -> None:
    assert ran.variables["API"] == f"{ran.walk.base}/api/v1/orgs/acme", ran.describe()
    assert ran.variables["H"] == f"Authorization: Bearer {ran.variables['KEY']}", ran.describe()


def made_key_named(name: str) -> Check:
    def check(ran: Ran) -> None:
        assert ran.returncode == 0 and ran.variables[name].startswith("ibk_"), ran.describe()
    return check


def defined_admin_header(ran: Ran) -> None:
    assert ran.variables["A"] == f"Authorization: Bearer {ran.variables['ADMIN']}", ran.describe()


def problem_naming_none_found(ran: Ran) -> None:
    body = ran.json()
    assert body["status"] == 409 and "_idp-bridge-challenge.contoso.com" in json.dumps(body), ran.describe()


def joins_by(mode: str) -> Check:
    def check(ran: Ran) -> None:
        assert ran.json()["domain_join"] == mode, ran.describe()
    return check


def no_items(ran: Ran) -> None:
    assert ran.json()["items"] == [], ran.describe()


def listed_then_deleted(ran: Ran) -> None:
    listed = json.loads(ran.stdout)
    assert [item["id"] for item in listed["items"]] == [ran.variables["DID"]], ran.describe()


def problem(code: str, text: str = "") -> Check:
    def check(ran: Ran) -> None:
        body = ran.json()
        assert body["code"] == code and text in str(body.get("detail", "")), ran.describe()
    return check


def listed_ada(ran: Ran) -> None:
    assert [item["id"] for item in ran.json()["items"]] == [ran.variables["ID"]], ran.describe()


def resent(ran: Ran) -> None:
    body = ran.json()
    assert body["id"] == ran.variables["ID"] and body["send_count"] == 2, ran.describe()
    link_on_port(ran, body["link"])


def revoked(ran: Ran) -> None:
    assert ran.json()["status"] == "REVOKED", ran.describe()


def wrote_team_csv(ran: Ran) -> None:
    lines = (ran.walk.work / "team.csv").read_text().splitlines()
    assert lines[0] == "identifier,name,role,team" and len(lines) == 3, lines


def bulk_summary(ran: Ran) -> None:
    assert ran.json()["summary"] == {"created": 2, "duplicate": 0, "invalid": 0}, ran.describe()


def no_active_admins(ran: Ran) -> None:
    assert ran.json()["items"] == [], ran.describe()


def exported_members(ran: Ran) -> None:
    rows = (ran.walk.work / "members.csv").read_text().splitlines()
    assert rows[0].startswith("identifier,name,role,provider,member_id,status"), rows[:1]
    assert {row.split(",")[0] for row in rows[1:]} >= {"grace@example.com", "alan@example.com"}, rows


def role_is(role: str) -> Check:
    def check(ran: Ran) -> None:
        assert ran.json()["role"] == role, ran.describe()
    return check


def bulk_role_changed(ran: Ran) -> None:
    body = ran.json()
    assert body["summary"] == {"ok": 1, "error": 0}, ran.describe()
    assert body["results"][0]["member"]["role"] == "ADMIN", ran.describe()


def removed(ran: Ran) -> None:
    assert ran.json()["status"] == "DELETED", ran.describe()


def audited(ran: Ran) -> None:
    items = ran.json()["items"]
    assert isinstance(items, list) and {item["action"] for item in items} == {"invite.created"}, ran.describe()
    assert ran.variables["ID"] in {item["target_id"] for item in items}, ran.describe()


def pytest_passed(count: int, deselected: int = 0) -> Check:
    def check(ran: Ran) -> None:
        summary = ran.stdout.strip().splitlines()[-1]
        expected = f"{count} passed" + (f", {deselected} deselected" if deselected else "")
        assert re.fullmatch(rf"=+ {expected} in [\d.]+s =+", summary), ran.describe()
    return check


def pytest_passed_as_collected(*args: str, env: dict[str, str] | None = None) -> Check:
    """pytest_passed with the counts pytest itself collects for `args` (so a test added to those files
    does not make the README's command look broken); the collection must select at least one test."""
    def check(ran: Ran) -> None:
        done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--collect-only", "-q",
                               *args], cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                              timeout=120)
        found = re.search(r"(\d+)/(\d+) tests collected \((\d+) deselected\)", done.stdout)
        assert found, done.stdout[-2000:] + done.stderr[-2000:]
        selected, deselected = int(found.group(1)), int(found.group(3))
        assert selected >= 1, done.stdout[-2000:]
        pytest_passed(selected, deselected=deselected)(ran)
    return check


def linted(ran: Ran) -> None:
    out = ran.stdout
    assert "All checks passed!" in out, ran.describe()
    # mypy over the packages, then bench/, then scripts/: three runs, each clean (none found a module twice).
    for run in ("-m mypy idp_bridge providers webhooks", "-m mypy --explicit-package-bases bench", "-m mypy scripts"):
        assert run in out, ran.describe()
    assert len(re.findall(r"^Success: no issues found in \d+ source files?$", out, re.MULTILINE)) == 3, ran.describe()


STEPS = (
    Step(r"make demo\b", special="demo"),
    Step(r"make run\b", special="serve"),
    Step(r"make test(?![-\w])", special="make-test"),
    Step(r"\.venv/bin/idp-bridge org create acme", check=created_org),
    Step(r"KEY=\$\(\.venv/bin/idp-bridge api-key create", check=made_key),
    Step(r"INVITE=\$\(curl -s -X POST \S+/api/v1/orgs/acme/invites", statuses=(201,)),
    Step(r'echo "\$INVITE"', check=echoed_invite),
    Step(r"ID=\$\(echo", check=set_variable("ID")),
    Step(r"ls instance/mail/", special="mail", check=listed_mail),
    Step(r"API=", check=defined_api),
    Step(r"curl -s -X POST \$API/invites -H .*entra", statuses=(422,),
         check=problem("validation_failed", "unknown provider 'entra'")),
    Step(r'curl -s "\$API/invites\?status=PENDING', statuses=(200,), check=listed_ada),
    Step(r"curl -s -X POST \$API/invites/\$ID/resend", statuses=(200,), check=resent),
    Step(r"curl -s -X POST \$API/invites/\$ID/retry-provisioning", statuses=(409,),
         check=problem("invalid_state", "only a pending invite whose provisioning failed")),
    Step(r"curl -s -X POST \$API/invites/\$ID/revoke", statuses=(200,), check=revoked),
    Step(r"cat > team\.csv", check=wrote_team_csv),
    Step(r'curl -s -X POST "\$API/invites/bulk\?dry_run=true"', statuses=(200,), check=bulk_summary),
    Step(r'curl -s -X POST "\$API/invites/bulk" ', statuses=(200,), check=bulk_summary),
    Step(r'curl -s "\$API/members\?status=ACTIVE', statuses=(200,), check=no_active_admins),
    Step(r'curl -s "\$API/members" .*members\.csv', statuses=(200,), check=exported_members),
    Step(r"MID=\$\(curl", statuses=(200,), check=set_variable("MID")),
    Step(r"curl -s -X PATCH \$API/members/\$MID", statuses=(200,), check=role_is("MEMBER")),
    Step(r"curl -s -X POST \$API/members/\$MID/deactivate", statuses=(409,),
         check=problem("invalid_state", "only an ACTIVE member can be deactivated")),
    Step(r"curl -s -X POST \$API/members/bulk", statuses=(200,), check=bulk_role_changed),
    Step(r"curl -s -X DELETE \$API/members/\$MID", statuses=(200,), check=removed),
    Step(r'curl -s "\$API/audit-events', statuses=(200,), check=audited),
    Step(r"ADMIN=\$\(\.venv/bin/idp-bridge api-key create", check=made_key_named("ADMIN")),
    Step(r'A="Authorization', check=defined_admin_header),
    Step(r"DID=\$\(curl -s -X POST \$API/domains", statuses=(201,), check=set_variable("DID")),
    Step(r"curl -s -X POST \$API/domains/\$DID/verify", statuses=(409,), check=problem_naming_none_found),
    Step(r"curl -s -X PATCH \$API -H .*domain_join", statuses=(200,), check=joins_by("request")),
    Step(r'curl -s "\$API/join-requests\?status=PENDING', statuses=(200,), check=no_items),
    Step(r"curl -s \$API/domains -H .*DELETE", statuses=(200, 204), check=listed_then_deleted),
    Step(r'make test-sqlite PYTEST_ARGS="tests/test_smoke_flow\.py -x"', check=pytest_passed(1),
         timeout=DEVELOPMENT_TIMEOUT_S),
    Step(r"IDP_BRIDGE_TEST_DB=postgres \.venv/bin/python -m pytest -m postgres tests/test_concurrency\.py \\\n"
         r"\s+tests/pages/test_redeem_concurrency\.py\s", check=pytest_passed_as_collected(
             "-m", "postgres", "tests/test_concurrency.py", "tests/pages/test_redeem_concurrency.py",
             env={"IDP_BRIDGE_TEST_DB": "postgres"}),
         timeout=DEVELOPMENT_TIMEOUT_S),
    Step(r"make lint\b", check=linted, timeout=DEVELOPMENT_TIMEOUT_S),
)


def step_of(command: str) -> Step:
    found = [step for step in STEPS if step.matches(command)]
    assert len(found) == 1, f"README command with {len(found)} expectations in {__name__} (one needed):\n{command}"
    return found[0]


def assigned_variables(commands: list[str]) -> list[str]:
    return sorted({name for command in commands
                   for name in re.findall(r"(?:^|;\s*)([A-Za-z_][A-Za-z0-9_]*)=", command, re.MULTILINE)})


def test_every_readme_command_has_one_expectation_and_every_expectation_a_command() -> None:
    commands = readme_commands((*SECTIONS, DEVELOPMENT))
    assert len(commands) >= len(STEPS)
    used = [step_of(command) for command in commands]
    assert [step.pattern for step in STEPS if step not in used] == []


def test_the_command_splitter_keeps_continuations_here_documents_and_quotes_together() -> None:
    block = "# a comment\nA=$(echo 1 \\\n  2)\ncat > f <<'EOF'\nx,y\nEOF\n\necho 'a\nb'  # two lines\nls\n"
    assert split_commands(block) == ["A=$(echo 1 \\\n  2)", "cat > f <<'EOF'\nx,y\nEOF", "echo 'a\nb'  # two lines",
                                     "ls"]


def wait_for_ready(walk: Walkthrough) -> None:
    assert walk.serve is not None and walk.serve_log is not None
    deadline = time.monotonic() + SERVE_TIMEOUT_S
    while time.monotonic() < deadline:
        assert walk.serve.poll() is None, f"make run exited:\n{walk.serve_log.read_text()}"
        with contextlib.suppress(urllib.error.URLError, OSError), \
                urllib.request.urlopen(f"{walk.base}/readyz", timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.3)
    pytest.fail(f"make run did not get ready within {SERVE_TIMEOUT_S:.0f} s:\n{walk.serve_log.read_text()}")


def stop_serve(walk: Walkthrough) -> None:
    process = walk.serve
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def run_special(walk: Walkthrough, step: Step, command: str) -> None:
    if step.special == "serve":
        assert command.split(" #")[0].strip() == "make run", command
        walk.serve_log = walk.work / "make-run.log"
        with walk.serve_log.open("wb") as log:
            walk.serve = subprocess.Popen(["make", "run", f"PORT={walk.port}"], cwd=walk.work, env=walk.env,
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        wait_for_ready(walk)
    elif step.special == "demo":
        dry = subprocess.run(["make", "-n", "demo", "PORT=8081", "OP_PORT=9081"], cwd=walk.work, env=walk.env,
                             capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False)
        assert dry.returncode == 0 and "scripts/demo.py --port 8081 --op-port 9081" in dry.stdout, dry
        assert 'subprocess.Popen(["make", "demo"' in (ROOT / "tests" / "e2e" / "test_demo.py").read_text()
    elif step.special == "make-test":
        dry = subprocess.run(["make", "-n", "test"], cwd=walk.work, env=walk.env, capture_output=True, text=True,
                             timeout=COMMAND_TIMEOUT_S, check=False)
        assert dry.returncode == 0, dry
        assert "IDP_BRIDGE_TEST_DB=sqlite" in dry.stdout and "IDP_BRIDGE_TEST_DB=postgres" in dry.stdout, dry
    elif step.special == "mail":
        deadline = time.monotonic() + MAIL_TIMEOUT_S
        while not list((walk.work / "instance" / "mail").glob("*.eml")):
            assert time.monotonic() < deadline, f"no invitation mail within {MAIL_TIMEOUT_S:.0f} s"
            time.sleep(0.2)


@pytest.fixture
def walkthrough(tmp_path: Path) -> Iterator[Walkthrough]:
    work = checkout_dir(tmp_path)
    curl_home = tmp_path / "curl-home"
    curl_home.mkdir()
    (curl_home / ".curlrc").write_text(f'write-out = "%{{stderr}}{STATUS_MARK}%{{http_code}}\\n"\n')
    state = tmp_path / "variables.sh"
    state.write_text("")
    (port,) = free_ports(1)
    assert str(port) != README_PORT
    walk = Walkthrough(work, port, child_env(CURL_HOME=str(curl_home)), state, assigned_variables(readme_commands()))
    try:
        yield walk
    finally:
        stop_serve(walk)


@pytest.mark.slow
def test_every_command_of_the_quick_start_and_the_http_api_runs_as_written_on_another_port(
        walkthrough: Walkthrough) -> None:
    for command in readme_commands():
        step = step_of(command)
        if step.special:
            run_special(walkthrough, step, command)
            if step.special != "mail":
                continue
        ran = walkthrough.run(command)
        assert ran.returncode == 0, ran.describe()
        assert ran.statuses == list(step.statuses), ran.describe()
        if step.check is not None:
            step.check(ran)


@pytest.mark.slow
def test_every_command_of_the_development_section_runs_as_written(walkthrough: Walkthrough, tmp_path: Path) -> None:
    # The inner pytest runs keep their temporary directories apart from this run's.
    walkthrough.env["PYTEST_ADDOPTS"] = f"--basetemp={tmp_path / 'inner-pytest'}"
    commands = readme_commands((DEVELOPMENT,))
    assert len(commands) == 4
    for command in commands:
        step = step_of(command)
        if step.special:
            run_special(walkthrough, step, command)
            continue
        ran = walkthrough.run(command, timeout=step.timeout)
        assert ran.returncode == 0, ran.describe()
        assert step.check is not None
        step.check(ran)
