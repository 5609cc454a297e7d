"""Outbound events to the host platform, signed per Standard Webhooks."""
