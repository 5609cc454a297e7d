"""Microsoft Graph B2B guest invitations with an app-only token from MSAL.

`check()` is the one place where Graph's statuses and `{"error": {"code", "message"}}` bodies become
ProviderError codes (retryable or not, with Retry-After).
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

import msal
import requests

from idp_bridge.domain.providers import InviteTarget, ProvisionResult
from idp_bridge.errors import ProviderError
from providers.http import ProviderHTTP
from providers.keycloak_admin import RETRYABLE_STATUSES, retry_after_seconds

PENDING = "PendingAcceptance"


def _graph_error(response: requests.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        return "", (response.text or "").strip()[:200]
    if isinstance(error, dict):
        return str(error.get("code") or ""), str(error.get("message") or "")
    return str(error), str(response.json().get("error_description") or "")


def check(response: requests.Response, expected: tuple[int, ...], what: str) -> requests.Response:
    """Return the response when its status is expected; otherwise raise the matching ProviderError."""
    status = response.status_code
    if status in expected:
        return response
    code, message = _graph_error(response)
    detail = f"Microsoft Graph {what}: HTTP {status} {code}: {message}".strip()
    if status in RETRYABLE_STATUSES or status >= 500:
        raise ProviderError(detail, retryable=True, provider_code=f"http_{status}",
                            retry_after=retry_after_seconds(response.headers.get("Retry-After")))
    if status == 403:
        raise ProviderError(
            f"{detail}. Microsoft Entra refused to invite the guest: check that B2B guest invitations are "
            "allowed in the tenant's External collaboration settings and that the app has the User.Invite.All "
            "application permission with admin consent.", retryable=False, provider_code="forbidden")
    raise ProviderError(detail, retryable=False, provider_code={401: "unauthorized", 404: "not_found"}.get(
        status, f"http_{status}"))


class GraphGuests:
    """Guest invitations and guest state in one resource tenant; shared by every worker thread."""

    def __init__(self, *, authority: str, tenant: str, client_id: str, client_secret: str,
                 graph_url: str = "https://graph.microsoft.com", send_message: bool = True,
                 timeout: float = 10.0, verify: bool | str = True, http: ProviderHTTP | None = None) -> None:
        self.graph_url = graph_url.rstrip("/")
        self.send_message = send_message
        self.timeout = timeout
        self.http = (http if http is not None else ProviderHTTP()).session(timeout=timeout, verify=verify)
        self.app = msal.ConfidentialClientApplication(
            client_id, client_credential=client_secret, authority=f"{authority.rstrip('/')}/{tenant}",
            http_client=self.http, timeout=timeout, token_cache=msal.TokenCache())
        self._lock = threading.Lock()

    def _token(self) -> str:
        try:
            # msal answers from its token cache until the token is close to expiry.
            with self._lock:
                result: dict[str, Any] = self.app.acquire_token_for_client(scopes=[f"{self.graph_url}/.default"])
        except (requests.RequestException, ValueError) as exc:
            raise ProviderError(f"Microsoft identity platform unreachable: {exc}", retryable=True,
                                provider_code="connection") from exc
        if "access_token" in result:
            return str(result["access_token"])
        error = str(result.get("error") or "")
        description = str(result.get("error_description") or "").split(" Trace ID:")[0]
        retryable = error in ("temporarily_unavailable", "server_error")
        raise ProviderError(f"Microsoft token request failed: {error}: {description}", retryable=retryable,
                            provider_code=error or "token_failed")

    def _call(self, method: str, path: str, expected: tuple[int, ...], what: str,
              **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self._token()}"}
        try:
            response = self.http.request(method, f"{self.graph_url}{path}", headers=headers, timeout=self.timeout,
                                         **kwargs)
        except requests.RequestException as exc:
            raise ProviderError(f"Microsoft Graph {what}: {exc}", retryable=True, provider_code="connection") from exc
        return check(response, expected, what)

    def invite(self, target: InviteTarget) -> ProvisionResult:
        """Invite the invitee as a guest; Graph hands back the same object when asked again."""
        if not target.email:
            raise ProviderError("a B2B guest invitation needs an email; the invite has none", retryable=False,
                                provider_code="no_email")
        body: dict[str, Any] = {"invitedUserEmailAddress": target.email, "inviteRedirectUrl": target.link,
                                "sendInvitationMessage": self.send_message}
        if target.name:
            body["invitedUserDisplayName"] = target.name
        answer = self._call("POST", "/v1.0/invitations", (201,), "guest invitation", json=body).json()
        user_id = str((answer.get("invitedUser") or {}).get("id") or "")
        if not user_id:
            raise ProviderError("Microsoft Graph guest invitation: no invitedUser.id in the answer", retryable=True,
                                provider_code="no_user")
        status = str(answer.get("status") or "")
        data = {"redeem_url": answer.get("inviteRedeemUrl"), "invitation_id": answer.get("id"),
                "invitation_status": status}
        return ProvisionResult(user_id=user_id, created=status == PENDING, data=data, mailed=self.send_message)

    def guest_state(self, user_id: str) -> str | None:
        """The guest's externalUserState (PendingAcceptance, Accepted), or None when the user is gone."""
        try:
            answer = self._call("GET", f"/v1.0/users/{quote(user_id, safe='')}", (200,), "read guest",
                                params={"$select": "externalUserState"}).json()
        except ProviderError as exc:
            if exc.provider_code == "not_found":
                return None
            raise
        return str(answer.get("externalUserState") or "")

    def remove_unredeemed(self, user_id: str) -> str:
        """Delete a guest that never redeemed its invitation; keep one that did."""
        state = self.guest_state(user_id)
        if state is None:
            return "gone"
        if state != PENDING:
            return f"kept: the guest is {state or 'not a pending guest'}"
        try:
            self._call("DELETE", f"/v1.0/users/{quote(user_id, safe='')}", (204,), "delete guest")
        except ProviderError as exc:
            if exc.provider_code == "not_found":
                return "gone"
            raise
        return "deleted"

    def set_enabled(self, user_id: str, enabled: bool) -> str:
        """Block or unblock sign-in of the guest (accountEnabled); "gone" when it no longer exists."""
        try:
            self._call("PATCH", f"/v1.0/users/{quote(user_id, safe='')}", (204,), "update guest",
                       json={"accountEnabled": enabled})
        except ProviderError as exc:
            if exc.provider_code == "not_found":
                return "gone"
            raise
        return "enabled" if enabled else "disabled"

    def create_subscription(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a change-notification subscription; Graph validates its notification URLs first."""
        answer: dict[str, Any] = self._call("POST", "/v1.0/subscriptions", (201,), "create subscription",
                                            json=body).json()
        return answer

    def renew_subscription(self, subscription_id: str, expiration: str) -> None:
        """Move a subscription's expirationDateTime; ProviderError not_found when Graph dropped it."""
        self._call("PATCH", f"/v1.0/subscriptions/{quote(subscription_id, safe='')}", (200,), "renew subscription",
                   json={"expirationDateTime": expiration})
