"""Model backends behind one spec string: ``hf:PATH``, ``openai:MODEL@URL``, ``builtin:NAME``,
``gguf:FILE``, ``vllm:DIR``.

A backend joins with one :func:`register_backend` call; :func:`load_model` parses the
spec and hands the rest of it to the backend's factory.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ladder.errors import ModelLoadError, UnsupportedError
from ladder.models.base import (
    GGUF_CAPABILITIES,
    LOCAL_CAPABILITIES,
    OPENAI_CAPABILITIES,
    VLLM_CAPABILITIES,
    Capabilities,
    LanguageModel,
)

BackendFactory = Callable[..., LanguageModel]
BackendCheck = Callable[[str], None]
BackendFolder = Callable[[str], Path]
_BACKENDS: dict[str, BackendFactory] = {}
_CHECKS: dict[str, BackendCheck] = {}
_CAPABILITIES: dict[str, Capabilities] = {}
_FOLDERS: dict[str, BackendFolder] = {}
_BUILTINS_REGISTERED = False


def register_backend(
    prefix: str,
    factory: BackendFactory,
    check: BackendCheck | None = None,
    capabilities: Capabilities | None = None,
    folder: BackendFolder | None = None,
) -> None:
    """Make ``prefix:REST`` specs load through ``factory(REST, **options)``.

    ``check(REST)``, when given, finds what would make loading fail (a missing checkpoint,
    an untrained built-in) without loading weights or contacting a server: long runs call
    it through :func:`check_model` before they change anything on disk. ``capabilities``
    is what the backend's models can do (:func:`capabilities_of` answers it for a spec
    without loading anything); a loaded model says the same in ``info.capabilities``.
    ``folder(REST)``, for backends with ``local_weights``, is the weights folder the spec
    names (:func:`weights_folder`): what quantising, merging, exporting and vLLM read.
    """
    _BACKENDS[prefix] = factory
    if folder is not None:
        _FOLDERS[prefix] = folder
    if check is not None:
        _CHECKS[prefix] = check
    _CAPABILITIES[prefix] = capabilities or Capabilities()


def capabilities_of(spec: str) -> Capabilities:
    """What the backend behind ``spec`` can do, without loading the model.

    Raises:
        ModelLoadError: the spec does not start with a registered prefix.
    """
    check_spec(spec)
    return _CAPABILITIES.get(spec.partition(":")[0], Capabilities())


def weights_folder(spec: str) -> Path:
    """The folder of weights ``spec`` names, for a backend with ``local_weights``.

    Raises:
        ModelLoadError: unknown prefix.
        UnsupportedError: the backend's weights are not a folder here (an endpoint).
    """
    check_spec(spec)
    prefix, _, rest = spec.partition(":")
    folder = _FOLDERS.get(prefix)
    if folder is None:
        raise UnsupportedError(f"{spec}: not a local model; give local weights (hf:PATH)")
    return folder(rest)


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


def check_model(spec: str) -> None:
    """Check ``spec`` as far as it can be checked without loading it: a known prefix, then
    the backend's own cheap check (for ``hf:`` the folder, its config, weights and tokenizer
    files; for ``builtin:`` that the model is trained).

    Raises:
        ModelLoadError: what loading would fail on, in one line.
    """
    check_spec(spec)
    prefix, _, rest = spec.partition(":")
    check = _CHECKS.get(prefix)
    if check is not None:
        check(rest)


def _register_builtin_backends() -> None:
    global _BUILTINS_REGISTERED
    if _BUILTINS_REGISTERED:
        return
    _BUILTINS_REGISTERED = True
    # Each backend module is imported only when a spec uses it, so `ladder --help` and
    # an `openai:` model do not pay for importing torch.
    local = ("ladder.models.hf", "load_hf"), ("ladder.models.hf_checkpoint", "check_checkpoint")
    builtin = ("ladder.models.builtin", "load_builtin"), ("ladder.models.builtin", "check_builtin")
    folders = {"hf": _hf_folder, "builtin": _lazy_folder("ladder.models.builtin", "builtin_path")}
    for prefix, (load, check), can in (
        ("hf", local, LOCAL_CAPABILITIES),
        ("builtin", builtin, LOCAL_CAPABILITIES),
    ):
        if prefix not in _BACKENDS:  # a caller's own registration wins
            register_backend(prefix, _lazy(*load), _lazy_check(*check), can, folders[prefix])
    if "gguf" not in _BACKENDS:
        register_backend(
            "gguf",
            _lazy("ladder.models.llamacpp", "load_gguf"),
            _lazy_check("ladder.models.llamacpp", "check_gguf"),
            GGUF_CAPABILITIES,
        )
    if "vllm" not in _BACKENDS:
        register_backend(
            "vllm",
            _lazy("ladder.models.vllm_backend", "load_vllm"),
            _lazy_check("ladder.models.vllm_backend", "check_vllm"),
            VLLM_CAPABILITIES,
        )
    if "openai" not in _BACKENDS:
        factory = _lazy("ladder.models.openai_api", "load_openai")
        register_backend("openai", factory, capabilities=OPENAI_CAPABILITIES)


def _lazy(module: str, name: str) -> BackendFactory:
    def factory(rest: str, **options: Any) -> LanguageModel:
        loader: BackendFactory = getattr(importlib.import_module(module), name)
        return loader(rest, **options)

    factory.__qualname__ = factory.__name__ = f"{module}.{name}"
    return factory


def _hf_folder(rest: str) -> Path:
    return Path(rest).expanduser()


def _lazy_folder(module: str, name: str) -> BackendFolder:
    def folder(rest: str) -> Path:
        return Path(getattr(importlib.import_module(module), name)(rest))

    return folder


def _lazy_check(module: str, name: str) -> BackendCheck:
    def check(rest: str) -> None:
        getattr(importlib.import_module(module), name)(rest)

    return check
