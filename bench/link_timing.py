"""Dead invite links: median time of GET /invite/<token> per kind of dead link (a look, not a test).

Expired, revoked, unknown and tampered links must cost the same (SPEC §3); this prints the median and the
interquartile range of each kind, requested interleaved in random order in one process (the app called in
process through its test client, so the figures are the bridge's own work, not the network's).

    python bench/link_timing.py [--rounds 2000] [--database sqlite|postgres]
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, temp_database
from idp_bridge import audit
from idp_bridge.bootstrap import build, create_app
from idp_bridge.inputs import InviteInput, OrgCreate
from idp_bridge.migrate import upgrade
from idp_bridge.models import Invite, utcnow
from idp_bridge.services import invites, orgs
from idp_bridge.settings import load_settings
from idp_bridge.store.db import transaction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, temp_database(args.database, Path(tmp), "links") as url:
        settings = load_settings(overrides={"instance_dir": str(Path(tmp) / "instance"), "database_url": url,
                                            "secret_key": secrets.token_hex(32),
                                            "invite_page_rate_limit": "1000000/minute"}, environ={})
        bridge = build(settings)
        upgrade(bridge.engine)
        with transaction(bridge.sessions) as session:
            org = orgs.create(session, bridge, audit.CLI, OrgCreate(slug="acme", name="Acme", member_limit=100))
            issued = {kind: invites.create(session, bridge, audit.CLI, org,
                                           InviteInput(identifier=f"{kind}@example.com", send_email=False))
                      for kind in ("expired", "revoked", "tampered")}
            invites.revoke(session, audit.CLI, org, issued["revoked"].invite.id)
            expired = session.get(Invite, issued["expired"].invite.id)
            assert expired is not None
            expired.expires_at = utcnow() - timedelta(seconds=1)
        token = {kind: i.link.rsplit("/", 1)[1] for kind, i in issued.items()}
        token["tampered"] = token["tampered"][:-1] + ("A" if token["tampered"][-1] != "A" else "B")
        token["unknown"] = secrets.token_urlsafe(32)
        client = create_app(bridge=bridge).test_client()
        times: dict[str, list[float]] = {kind: [] for kind in token}
        kinds = list(token)
        for _ in range(args.rounds):
            random.shuffle(kinds)
            for kind in kinds:
                start = time.perf_counter()
                resp = client.get(f"/invite/{token[kind]}")
                times[kind].append((time.perf_counter() - start) * 1000)
                assert resp.status_code == 404, (kind, resp.status_code)
        bridge.close()
    print(f"GET /invite/<token>, {args.rounds} requests per kind, {args.database}")
    for kind in sorted(times):
        values = times[kind]
        print(f"  {kind:<10} median {statistics.median(values):.3f} ms   "
              f"p25 {percentile(values, 25):.3f}   p75 {percentile(values, 75):.3f}")


if __name__ == "__main__":
    main()
