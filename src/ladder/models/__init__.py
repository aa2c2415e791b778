"""Model backends behind one spec string: ``hf:PATH``, ``openai:MODEL@URL``, ``builtin:NAME``.

A backend joins with one :func:`register_backend` call; :func:`load_model` parses the
spec and hands the rest of it to the backend's factory.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ladder.errors import ModelLoadError
from ladder.models.base import LanguageModel

BackendFactory = Callable[..., LanguageModel]
_BACKENDS: dict[str, BackendFactory] = {}
_BUILTINS_REGISTERED = False


def register_backend(prefix: str, factory: BackendFactory) -> None:
    """Make ``prefix:REST`` specs load through ``factory(REST, **options)``."""
    _BACKENDS[prefix] = factory


def backend_names() -> list[str]:
    """The registered spec prefixes, sorted."""
    _register_builtin_backends()
    return sorted(_BACKENDS)


def load_model(spec: str, **options: Any) -> LanguageModel:
    """Load a model from a spec string such as ``hf:./ckpt`` or ``builtin:tiny``.

    Args:
        spec: ``PREFIX:REST``; see :func:`backend_names` for the prefixes.
        **options: backend options (``dtype``, ``device``, ``trust_remote_code``, ``timeout`` ...).

    Raises:
        ModelLoadError: unknown prefix, or the backend cannot load what the spec names.
    """
    check_spec(spec)
    prefix, _, rest = spec.partition(":")
    return _BACKENDS[prefix](rest, **options)


def check_spec(spec: str) -> None:
    """Check that ``spec`` names a known backend, without loading anything.

    Raises:
        ModelLoadError: the spec does not start with a registered prefix.
    """
    _register_builtin_backends()
    prefix, sep, _ = spec.partition(":")
    if not sep or prefix not in _BACKENDS:
        known = ", ".join(f"{p}:" for p in sorted(_BACKENDS))
        raise ModelLoadError(
            f"unknown model spec {spec!r}: it must start with one of {known} "
            "(e.g. hf:./my-checkpoint, openai:gpt-4o-mini@https://api.openai.com/v1, builtin:tiny)"
        )


def _register_builtin_backends() -> None:
    global _BUILTINS_REGISTERED
    if _BUILTINS_REGISTERED:
        return
    _BUILTINS_REGISTERED = True
    # Each backend module is imported only when a spec uses it, so `ladder --help` and
    # an `openai:` model do not pay for importing torch.
    _BACKENDS.setdefault("hf", _lazy("ladder.models.hf", "load_hf"))
    _BACKENDS.setdefault("openai", _lazy("ladder.models.openai_api", "load_openai"))
    _BACKENDS.setdefault("builtin", _lazy("ladder.models.builtin", "load_builtin"))


def _lazy(module: str, name: str) -> BackendFactory:
    def factory(rest: str, **options: Any) -> LanguageModel:
        loader: BackendFactory = getattr(importlib.import_module(module), name)
        return loader(rest, **options)

    factory.__qualname__ = factory.__name__ = f"{module}.{name}"
    return factory
