"""Placeholder: replaced by the fit implementation."""

def fit() -> None:
    """Estimate the memory a model needs and which GPUs it fits on."""
