"""The core's values and protocols: what the service layer, the faces and the adapters agree on."""
