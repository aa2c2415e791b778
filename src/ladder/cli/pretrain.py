"""Placeholder: replaced by the pretrain implementation."""

def pretrain() -> None:
    """Pretrain a model from scratch (the built-in tiny/small presets or a config)."""
