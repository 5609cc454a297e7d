"""Webhooks: IdP events in, signed events out."""
