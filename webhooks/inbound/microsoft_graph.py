"""Microsoft Graph change notifications on users: clientState check, guest reconcile, subscription lifecycle.

The subscriptions idp-bridge keeps renewed are stored here (table graph_subscriptions), not in the core's models:
they exist only for providers that send change notifications.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import String, select
from sqlalchemy.orm import Mapped, mapped_column

from idp_bridge import jsontext
from idp_bridge.bridge import Bridge
from idp_bridge.domain.providers import ChangeNotificationSource
from idp_bridge.errors import ConfigError, ProviderError
from idp_bridge.inbox import IdpSignal, InboundView
from idp_bridge.models import Base, Invite, Member, MemberStatus, utcnow
from idp_bridge.security import same
from idp_bridge.store.db import transaction

log = logging.getLogger(__name__)

SOURCE = "microsoft-graph"
ACCEPTED = "Accepted"
# Graph allows 41,760 minutes for directory resources; a little less absorbs clock skew.
SUBSCRIPTION_MINUTES = 41_700
RENEW_BEFORE = timedelta(days=3)
RESOURCE = "users"
CHANGE_TYPE = "updated,deleted"
GRAPH_TIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(?:Z|\+00:00)$")


class GraphSubscription(Base):
    """A Microsoft Graph change-notification subscription idp-bridge created and keeps renewed."""

    __tablename__ = "graph_subscriptions"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    provider: Mapped[str] = mapped_column(String(64), index=True)
    resource: Mapped[str] = mapped_column(String(200))
    change_type: Mapped[str] = mapped_column(String(100))
    notification_url: Mapped[str] = mapped_column(String(2000))
    lifecycle_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    expires_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    renewed_at: Mapped[datetime | None] = mapped_column(nullable=True)


def sources(bridge: Bridge) -> list[ChangeNotificationSource]:
    """The configured providers that send change notifications."""
    return [s for s in (p.change_notifications() for p in bridge.providers.values()) if s is not None]


def provider_for_state(bridge: Bridge, client_state: Any) -> str | None:
    """The provider whose client state (graph_client_state) this notification carries, or None."""
    if not isinstance(client_state, str) or not client_state:
        return None
    for source in sources(bridge):
        expected = source.client_state()
        if expected and same(expected, client_state):
            return source.name
    return None


def split(bridge: Bridge, body: bytes) -> list[tuple[str, str, str]]:
    """The notifications of a POST that carry our clientState, as (provider, event id, item JSON).

    Raises ValueError (jsontext.TooDeep when nested too deeply) for a body that is not JSON.
    """
    payload = jsontext.loads(body)
    items = payload.get("value") if isinstance(payload, dict) else None
    found = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        provider = provider_for_state(bridge, item.get("clientState"))
        if provider is None:
            continue  # acknowledged, never acted on: it is not from our subscription
        raw = json.dumps(item, sort_keys=True, separators=(",", ":"))
        found.append((provider, "sha256:" + hashlib.sha256(raw.encode()).hexdigest(), raw))
    return found


def _source(bridge: Bridge, name: str) -> ChangeNotificationSource:
    provider = bridge.provider(name)
    source = provider.change_notifications() if provider is not None else None
    if source is None:
        raise ConfigError(f"providers.{name}", "is not a configured entra provider")
    return source


def _user_signals(bridge: Bridge, provider_name: str, user_id: str, change: str) -> list[IdpSignal]:
    details = {"event": f"graph.{change}", "user_id": user_id}
    if change == "deleted":
        return [IdpSignal("deleted", provider_name, user_id, None, details)]
    state = _source(bridge, provider_name).guest_state(user_id)
    if state is None:
        return [IdpSignal("deleted", provider_name, user_id, None, details)]
    if state == ACCEPTED:
        return [IdpSignal("activated", provider_name, user_id, None, {**details, "externalUserState": state})]
    return []


def reconcile(bridge: Bridge, provider_name: str) -> list[IdpSignal]:
    """Ask Graph about every guest still INVITED through this provider (after missed notifications)."""
    with transaction(bridge.sessions) as session:
        user_ids = sorted({u for u in session.scalars(
            select(Invite.idp_user_id).join(Member, Member.id == Invite.member_id)
            .where(Invite.provider == provider_name, Invite.idp_user_id.is_not(None),
                   Member.status == MemberStatus.INVITED)) if u})
    signals: list[IdpSignal] = []
    for user_id in user_ids:
        signals.extend(_user_signals(bridge, provider_name, user_id, "updated"))
    return signals


def interpret(bridge: Bridge, view: InboundView) -> list[IdpSignal]:
    """One stored notification: a user change (reconciled through Graph) or a lifecycle event."""
    item = json.loads(view.body)
    provider_name = view.source.split(":", 1)[1]
    lifecycle = item.get("lifecycleEvent")
    if lifecycle:
        return _lifecycle(bridge, provider_name, str(lifecycle), str(item.get("subscriptionId") or ""))
    user_id = str((item.get("resourceData") or {}).get("id") or str(item.get("resource") or "").split("/")[-1])
    if not user_id:
        return []
    return _user_signals(bridge, provider_name, user_id, str(item.get("changeType") or "updated"))


def _lifecycle(bridge: Bridge, provider_name: str, event: str, subscription_id: str) -> list[IdpSignal]:
    if event == "reauthorizationRequired":
        renew(bridge, provider_name, subscription_id)
    elif event == "subscriptionRemoved":
        subscribe(bridge, provider_name)
    elif event == "missed":
        return reconcile(bridge, provider_name)
    return []


def _expiry() -> datetime:
    return utcnow() + timedelta(minutes=SUBSCRIPTION_MINUTES)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def subscribe(bridge: Bridge, provider_name: str) -> GraphSubscription:
    """Create the users subscription (Graph validates both URLs first) and remember it."""
    source = _source(bridge, provider_name)
    client_state = source.client_state()
    if not client_state:
        raise ConfigError(f"providers.{provider_name}.graph_client_state", "missing; needed for Graph subscriptions")
    base = bridge.settings.public_url
    body = {"changeType": CHANGE_TYPE, "resource": RESOURCE, "clientState": client_state,
            "notificationUrl": f"{base}/webhooks/microsoft-graph",
            "lifecycleNotificationUrl": f"{base}/webhooks/microsoft-graph/lifecycle",
            "expirationDateTime": _iso(_expiry())}
    answer = source.create_subscription(body)
    with transaction(bridge.sessions) as session:
        for old in session.scalars(select(GraphSubscription).where(GraphSubscription.provider == provider_name)):
            session.delete(old)
        sub = GraphSubscription(id=str(answer["id"]), provider=provider_name, resource=RESOURCE,
                                change_type=CHANGE_TYPE, notification_url=body["notificationUrl"],
                                lifecycle_url=body["lifecycleNotificationUrl"],
                                expires_at=parse_graph_time(str(answer["expirationDateTime"])))
        session.add(sub)
    return sub


def renew(bridge: Bridge, provider_name: str, subscription_id: str) -> None:
    """Push the subscription's expiry out again; recreate it when Graph no longer knows it."""
    source = _source(bridge, provider_name)
    when = _expiry()
    try:
        source.renew_subscription(subscription_id, _iso(when))
    except ProviderError as exc:
        if exc.provider_code != "not_found":
            raise
        subscribe(bridge, provider_name)
        return
    with transaction(bridge.sessions) as session:
        sub = session.get(GraphSubscription, subscription_id)
        if sub is not None:
            sub.expires_at = when
            sub.renewed_at = utcnow()


def renew_due(bridge: Bridge) -> int:
    """Periodic: renew every subscription that expires within RENEW_BEFORE."""
    with transaction(bridge.sessions) as session:
        due = [(s.provider, s.id) for s in session.scalars(
            select(GraphSubscription).where(GraphSubscription.expires_at <= utcnow() + RENEW_BEFORE))]
    for provider_name, subscription_id in due:
        try:
            renew(bridge, provider_name, subscription_id)
        except (ProviderError, ConfigError) as exc:
            log.warning("renewing Graph subscription %s failed: %s", subscription_id, exc)
    return len(due)


def parse_graph_time(raw: str) -> datetime:
    """Graph writes up to seven fractional digits and a Z; Python takes six and an offset."""
    match = GRAPH_TIME.match(raw.strip())
    if match is None:
        raise ValueError(f"not a Graph timestamp: {raw!r}")
    fraction = (match.group(2) or "")[:7][:6]
    return datetime.fromisoformat(f"{match.group(1)}{'.' + fraction if fraction else ''}+00:00")
