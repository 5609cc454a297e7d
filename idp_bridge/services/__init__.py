"""Service layer: use cases over a Session; they flush but never commit."""
