"""The built-in providers are checked against the core's protocols by mypy (providers/conformance.py, part of
the lint); this shows that check failing for a provider whose method drifted from the protocol."""

from __future__ import annotations

from pathlib import Path

from mypy import api

ROOT = Path(__file__).resolve().parent.parent

DRIFTED = '''
from idp_bridge.domain.providers import MailPlan, Pacing, Provisioner


class Drifted:
    name = "drifted"

    def pacing(self) -> Pacing: ...
    def mail_plan(self, org_choice: str) -> MailPlan: ...
    def provision(self, target: object) -> None: ...
    def deprovision(self, user_id: str, *, created: bool) -> str: ...
    def set_enabled(self, user_id: str, enabled: bool) -> str: ...


def _check(p: Drifted) -> Provisioner:
    return p
'''


def check(tmp_path: Path, source: str) -> tuple[str, int]:
    module = tmp_path / "drifted.py"
    module.write_text(source)
    # The project's settings (strict), without its package list: only this module and what it imports.
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\nstrict = True\nignore_missing_imports = True\nmypy_path = {ROOT}\n"
                      "disable_error_code = empty-body\n")
    out, _err, status = api.run([str(module), "--config-file", str(config), "--no-incremental",
                                 "--cache-dir", str(tmp_path / "cache")])
    return out, status


def test_mypy_refuses_a_provider_whose_method_drifted_from_the_protocol(tmp_path: Path) -> None:
    out, status = check(tmp_path, DRIFTED)

    assert status == 1
    assert "drifted.py:16: error: Incompatible return value type" in out and "provision" in out


def test_mypy_accepts_the_same_provider_with_the_protocols_signature(tmp_path: Path) -> None:
    fixed = DRIFTED.replace("def provision(self, target: object) -> None: ...", (
        "def provision(self, target: InviteTarget, *, idp_mail: bool, since: datetime | None,\n"
        "                  before_create: Callable[[], None] | None = None) -> ProvisionResult: ..."))
    fixed = ("from collections.abc import Callable\nfrom datetime import datetime\n"
             + fixed.replace("import MailPlan, Pacing, Provisioner",
                             "import InviteTarget, MailPlan, Pacing, ProvisionResult, Provisioner"))

    out, status = check(tmp_path, fixed)

    assert (status, out.strip()) == (0, "Success: no issues found in 1 source file")
