"""Inbound IdP events: one module per source, each verifies and parses into core events."""
