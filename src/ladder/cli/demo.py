"""Placeholder."""

def demo() -> None:
    """Train the built-in tiny model if needed, then generate from it and show what it is."""
