"""idp-bridge: organization invitations on real identity providers."""

from idp_bridge.app import create_app

__all__ = ["create_app"]
