"""idp-bridge: organization invitations on real identity providers.

The app factory is `idp_bridge.bootstrap.create_app`; this package imports nothing, so importing a service or
the domain loads no web framework.
"""
