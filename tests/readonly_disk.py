"""Run `idp-bridge` subprocesses that file modes bind, and take their disk's write permission away mid-run.

The tests run as root, and root ignores file modes: a chmod'ed directory stays writable to it. Running the
child as `nobody` does not work here (the interpreter lives under /root, mode 0700), so the child keeps root's
uid but starts without the capabilities that bypass file modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
CAP_FOWNER), dropped from its bounding set by util-linux `setpriv` before exec; it is then an ordinary owner of
its files. `read_only` removes every write bit from its instance directory and files, which the child feels as a
read-only disk: it can create no file there (lock files, mail, a new WAL) and open none for writing (new SQLite
connections come up read-only). No chattr, mount or user switch is needed. Run as another user, the tests need
no dropping at all: the modes apply to the runner itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

# The capabilities that let root read, write and chmod whatever the file modes say.
MODE_OVERRIDES = "-dac_override,-dac_read_search,-fowner"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def bound_by_file_modes() -> list[str]:
    """The command prefix that starts a child without the capabilities that override file modes."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        import pytest

        pytest.skip("running as root needs util-linux setpriv to drop the file-mode override capabilities")
    return [setpriv, f"--bounding-set={MODE_OVERRIDES}", "--"]


def make_read_only(path: Path) -> None:
    """Drop every write bit in the tree: the child can neither create files there nor open them for writing."""
    for root, dirs, files in os.walk(path):
        for name in [*(os.path.join(root, f) for f in files), *(os.path.join(root, d) for d in dirs), root]:
            with suppress(FileNotFoundError):
                mode = os.stat(name).st_mode
                os.chmod(name, stat.S_IMODE(mode) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def make_writable(path: Path) -> None:
    """Give the owner its write bit back throughout the tree."""
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            with suppress(FileNotFoundError):
                os.chmod(name, stat.S_IMODE(os.stat(name).st_mode) | stat.S_IWUSR)


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """The tree is read-only to its owner for the block, writable again after it."""
    make_read_only(path)
    try:
        yield
    finally:
        make_writable(path)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, from /proc."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with suppress(OSError):
                    todo.extend(int(c) for c in Path(f"/proc/{current}/task/{task}/children").read_text().split())
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time spent so far by `pid` and its living descendants (all their threads)."""
    total = 0
    for each in process_tree(pid):
        with suppress(OSError):
            # Fields after the parenthesised command name; utime and stime are the 14th and 15th overall.
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("idp-bridge")
    return [str(script)] if script.exists() else [shutil.which("idp-bridge") or "idp-bridge"]


def child_env(home: Path, settings: dict[str, str]) -> dict[str, str]:
    """The child's environment: ours without IDP_BRIDGE_* and PROMETHEUS_* variables, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDP_BRIDGE_", "PROMETHEUS_"))}
    return env | {"HOME": str(home)} | settings


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `idp-bridge <args>` bound by file modes, stdout and stderr appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen([*bound_by_file_modes(), *console_script(), *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_healthy(base: str, proc: subprocess.Popen[bytes], log: Path, *, attempts: int = 300) -> None:
    """Poll /healthz (at most `attempts` times, 0.2 s apart) until it answers; fail with the log otherwise."""
    for _ in range(attempts):
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"serve did not come up:\n{log.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 20 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
