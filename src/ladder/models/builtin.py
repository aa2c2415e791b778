"""Placeholder: replaced by the built-in model implementation."""
from typing import Any


def load_builtin(name: str, **options: Any) -> Any:
    raise NotImplementedError
