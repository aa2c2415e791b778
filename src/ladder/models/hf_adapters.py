"""LoRA adapters chosen per request on the ``hf:`` backend (LoRA: Hu et al. 2021).

Adapters are loaded side by side on the one base with PEFT (``PeftModel.from_pretrained``
for the first, ``load_adapter`` for the rest); :func:`active_adapter` switches one on
(``set_adapter``) or all of them off (``disable_adapter``, for the base) around a call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ladder.errors import ModelLoadError

__all__ = ["active_adapter", "load_adapters"]


def load_adapters(model: Any, adapters: Mapping[str, str | Path]) -> Any:
    """Wrap a transformers model with PEFT adapters, one per name; returns the PeftModel.

    Raises:
        ModelLoadError: a folder is missing or is not a PEFT adapter.
    """
    from peft import PeftModel

    from ladder.quiet import peft_quietly

    peft_model: Any = None
    for name, path in adapters.items():
        folder = Path(path).expanduser()
        if not (folder / "adapter_config.json").is_file():
            raise ModelLoadError(
                f"--adapter {name}={folder}: no adapter_config.json there; give a folder "
                "saved by a PEFT model's save_pretrained"
            )
        try:
            with peft_quietly():
                if peft_model is None:
                    peft_model = PeftModel.from_pretrained(model, str(folder), adapter_name=name)
                else:
                    peft_model.load_adapter(str(folder), adapter_name=name)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"--adapter {name}={folder}: cannot load it ({first})") from exc
    peft_model.eval()
    return peft_model


@contextlib.contextmanager
def active_adapter(peft_model: Any, name: str | None) -> Iterator[None]:
    """Run with adapter ``name`` on, or every adapter off when ``name`` is None."""
    if peft_model is None:
        if name is not None:
            raise ModelLoadError(f"adapter {name}: no adapters are loaded on this model")
        yield
    elif name is None:
        with peft_model.disable_adapter():
            yield
    else:
        peft_model.set_adapter(name)
        yield
