"""Tests of idp_bridge.store."""
