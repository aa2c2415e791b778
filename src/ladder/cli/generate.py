"""Placeholder."""

def generate() -> None:
    """Generate text from a model."""

def chat() -> None:
    """Chat with a model in the terminal."""
