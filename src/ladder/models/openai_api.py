"""Placeholder: replaced by the openai backend."""
from typing import Any


def load_openai(rest: str, **options: Any) -> Any:
    raise NotImplementedError
