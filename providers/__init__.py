"""Built-in identity provider plugins; each implements idp_bridge.idp.Provider."""
