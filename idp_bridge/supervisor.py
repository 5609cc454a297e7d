"""The job worker's heartbeat (read by /readyz) and the supervisor that restarts the worker `serve` runs."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

HEARTBEAT_FILE = "worker.heartbeat"
# How often a running worker touches its heartbeat file.
BEAT_EVERY = 2.0


def heartbeat_path(instance_dir: Path) -> Path:
    """Where the job worker of this instance dir leaves its heartbeat."""
    return instance_dir / HEARTBEAT_FILE


def stale_after(poll_seconds: float) -> float:
    """A heartbeat older than this means no worker runs (a worker beats at least once per poll)."""
    return max(30.0, 3 * poll_seconds)


def heartbeat_age(path: Path) -> float | None:
    """Seconds since the last beat, or None when there is none."""
    try:
        return max(0.0, time.time() - path.stat().st_mtime)
    except FileNotFoundError:
        return None


class Heartbeat:
    """Touches the heartbeat file at most every BEAT_EVERY seconds; cheap enough for the worker's loop."""

    def __init__(self, path: Path, every: float = BEAT_EVERY) -> None:
        self.path = path
        self.every = every
        self._last = float("-inf")

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            return
        self._last = now
        try:
            # The file's mtime is the beat; the pid inside is for people looking at it.
            self.path.write_text(f"{os.getpid()}\n")
        except OSError as exc:
            # A worker that cannot write its instance dir keeps working; /readyz then reports it missing.
            log.debug("cannot write the worker heartbeat %s: %s", self.path, exc)


def describe_exit(code: int) -> str:
    """How a child process ended, for the log."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class WorkerSupervisor:
    """Runs the job worker as a child process and starts it again when it dies, with a growing pause.

    Call `poll()` often (serve's gunicorn master does once a second and on every SIGCHLD): it notices an exit,
    logs it once, and starts the next worker when the pause is over. The pause doubles after each quick death
    up to `max_backoff`, so a worker that cannot start costs one log line (and its own error) per pause.
    """

    def __init__(self, command: list[str], heartbeat: Path, *, min_backoff: float = 1.0,
                 max_backoff: float = 60.0, healthy_after: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.command = command
        self.heartbeat = heartbeat
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.healthy_after = healthy_after
        self.clock = clock
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._backoff = min_backoff
        self._started_at = 0.0
        self._start_at: float | None = None
        self._stopped = False
        # Workers that died since the last start: their jobs need not wait for their leases to run out.
        self._dead: list[int] = []

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """Start the worker now; it first requeues the jobs the workers that died here still held."""
        self._start_at = None
        self._started_at = self.clock()
        dead = [arg for pid in self._dead for arg in ("--release-leases-of", str(pid))]
        self.proc = subprocess.Popen([*self.command, *dead], env=os.environ.copy())
        self._dead = []
        # A worker just started counts as running until it misses its beats: /readyz must not answer 503 while
        # it is still importing.
        Heartbeat(self.heartbeat, every=0.0)()
        log.info("job worker started (pid %d)", self.proc.pid)

    def poll(self) -> None:
        """Notice a dead worker (and log it), or start the next one once its pause is over."""
        if self._stopped:
            return
        if self.proc is not None:
            code = self.proc.poll()
            if code is None:
                return
            now = self.clock()
            if now - self._started_at >= self.healthy_after:
                self._backoff = self.min_backoff
            pause = self._backoff
            self._backoff = min(self.max_backoff, self._backoff * 2)
            log.error("job worker (pid %d) %s; starting a new one in %.0f s", self.proc.pid, describe_exit(code),
                      pause)
            self._dead.append(self.proc.pid)
            self.proc = None
            self._start_at = now + pause
            # Its heartbeat is no longer true: /readyz answers 503 until the next worker beats.
            try:
                self.heartbeat.unlink(missing_ok=True)
            except OSError as exc:
                # A read-only instance dir: the beat goes stale instead, and the master must keep running.
                log.debug("cannot remove the worker heartbeat %s: %s", self.heartbeat, exc)
        if self._start_at is not None and self.clock() >= self._start_at:
            self.restarts += 1
            self.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the worker (SIGTERM, then SIGKILL after `timeout`) and start no other."""
        self._stopped = True
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
