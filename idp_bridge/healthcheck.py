"""A container healthcheck that needs no curl in the image.

`python -m idp_bridge.healthcheck URL`: healthy when URL answers 200 (e.g. http://127.0.0.1:8080/readyz).
`python -m idp_bridge.healthcheck --worker`: healthy when this instance's job worker beat recently.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

from idp_bridge.errors import ConfigError
from idp_bridge.settings import load_settings
from idp_bridge.supervisor import heartbeat_age, heartbeat_path, stale_after


def check_url(url: str, timeout: float) -> str | None:
    """None when `url` answers 200; otherwise what went wrong."""
    # A proxy from the environment has no business between a container and itself.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url}: {reason}"
    return None if status == 200 else f"{url}: HTTP {status}"


def check_worker() -> str | None:
    """None when the job worker of the configured instance dir beat within its staleness window."""
    settings = load_settings()
    age = heartbeat_age(heartbeat_path(settings.instance_dir))
    if age is None:
        return f"no job worker heartbeat in {settings.instance_dir}"
    limit = stale_after(settings.worker_poll_seconds)
    return None if age <= limit else f"the job worker's last heartbeat is {age:.0f} s old (limit {limit:.0f} s)"


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when healthy; 1 with the reason on stderr when not; 2 on a usage or configuration error."""
    parser = argparse.ArgumentParser(prog="python -m idp_bridge.healthcheck", description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("url", nargs="?", help="an address that must answer 200")
    target.add_argument("--worker", action="store_true", help="check the job worker's heartbeat instead")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    try:
        problem = check_worker() if args.worker else check_url(args.url, args.timeout)
    except ConfigError as exc:
        print(f"Error: configuration: {exc.detail}", file=sys.stderr)
        return 2
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
