"""Placeholder: replaced by the hf backend."""
from typing import Any


def load_hf(path: str, **options: Any) -> Any:
    raise NotImplementedError
