"""Built-in identity provider plugins; each implements the protocols of idp_bridge.domain.providers."""
