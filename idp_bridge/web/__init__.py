"""The HTTP faces: the JSON API, the invitee pages and the operations endpoints."""
