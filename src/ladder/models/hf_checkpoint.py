"""Loading a local transformers checkpoint for the ``hf:`` backend: options, checks, errors.

Every way a user's checkpoint can be wrong (missing, no config, corrupt JSON, pickle-only
weights, no tokenizer) ends in one :class:`~ladder.errors.ModelLoadError` line that names
the directory and says what to do. Nothing here downloads: paths are local directories only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ladder.errors import ModelLoadError

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DTYPES",
    "HFOptions",
    "check_checkpoint",
    "check_weights",
    "context_length",
    "eos_ids",
    "load_checkpoint",
    "pad_id",
    "parse_options",
    "read_config",
    "resolve_device",
    "resolve_dtype",
]

DTYPES = ("auto", "fp32", "bf16", "fp16")
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class HFOptions:
    """Options of ``hf:`` specs, as passed to ``load_model("hf:DIR", **options)``.

    Attributes:
        dtype: "auto" (bf16 on a GPU that supports it, else fp16 on a GPU, fp32 on CPU),
            "fp32", "bf16" or "fp16".
        device: "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
        trust_remote_code: run Python code shipped inside the checkpoint. Off by default:
            only turn it on for checkpoints whose code you have read or trust.
        allow_pickle: load ``pytorch_model.bin`` weights when no safetensors exist. Pickle
            files can run arbitrary code when loaded, so this is off by default.
        batch_size: most prompts run through the model at once by ``generate``.
    """

    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    allow_pickle: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE


def parse_options(options: Mapping[str, Any]) -> HFOptions:
    """Check ``options`` and turn them into :class:`HFOptions`.

    Raises:
        ModelLoadError: an unknown option or a value of the wrong kind.
    """
    known = set(HFOptions.__dataclass_fields__)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ModelLoadError(
            f"unknown hf: option(s) {', '.join(unknown)}; known options: {', '.join(sorted(known))}"
        )
    parsed = HFOptions(**options)
    if not isinstance(parsed.device, str):
        raise ModelLoadError(
            f"hf: device must be a string such as 'cpu' or 'cuda:0', got {parsed.device!r}"
        )
    if parsed.dtype not in DTYPES:
        raise ModelLoadError(f"hf: dtype {parsed.dtype!r} is not one of {', '.join(DTYPES)}")
    for flag in ("trust_remote_code", "allow_pickle"):
        if not isinstance(getattr(parsed, flag), bool):
            raise ModelLoadError(f"hf: option {flag} must be true or false")
    if isinstance(parsed.batch_size, bool) or not isinstance(parsed.batch_size, int):
        raise ModelLoadError("hf: option batch_size must be a whole number")
    if parsed.batch_size < 1:
        raise ModelLoadError(f"hf: batch_size must be at least 1, got {parsed.batch_size}")
    return parsed


def resolve_device(device: str) -> str:
    """Turn a device option into a concrete torch device string, checking it exists."""
    import torch

    has_mps = torch.backends.mps.is_available()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if device == "cpu":
        return device
    if device == "mps":
        if not has_mps:
            raise ModelLoadError("hf: device 'mps' was asked for but this machine has no MPS")
        return device
    kind, _, index = device.partition(":")
    if kind != "cuda" or (index and not index.isdigit()):
        raise ModelLoadError(f"hf: device {device!r} is not one of auto, cpu, cuda, cuda:N, mps")
    if not torch.cuda.is_available():
        raise ModelLoadError(f"hf: device {device!r} was asked for but torch sees no CUDA GPU")
    if index and int(index) >= torch.cuda.device_count():
        raise ModelLoadError(
            f"hf: device {device!r} does not exist: torch sees "
            f"{torch.cuda.device_count()} CUDA GPU(s)"
        )
    return device


def resolve_dtype(dtype: str, device: str) -> Any:
    """The torch dtype for a dtype option on a resolved device."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device == "mps" else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]


def read_config(directory: Path) -> dict[str, Any]:
    """Read ``config.json`` of a checkpoint directory, with one-line errors naming the path."""
    if not directory.exists():
        raise ModelLoadError(
            f"hf checkpoint {directory} does not exist: give a local directory made by "
            "save_pretrained (ladder never downloads from a hub)"
        )
    if not directory.is_dir():
        raise ModelLoadError(f"hf checkpoint {directory} is a file; give its directory instead")
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(
            f"{directory} has no config.json, so it is not a transformers checkpoint; "
            "save one with model.save_pretrained(dir) and tokenizer.save_pretrained(dir)"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelLoadError(
            f"{config_file}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; "
            "fix the file or save the checkpoint again"
        ) from None
    except UnicodeDecodeError:
        raise ModelLoadError(f"{config_file}: not UTF-8 text; save the checkpoint again") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{config_file}: expected a JSON object, got {type(config).__name__}")
    return config


def check_weights(directory: Path, allow_pickle: bool) -> bool:
    """Check the weight files; returns whether to load safetensors (else pickle).

    Raises:
        ModelLoadError: no weights, or only pickle weights without ``allow_pickle``.
    """
    if any(directory.glob("*.safetensors")):
        return True
    if not any(directory.glob("*.bin")):
        raise ModelLoadError(
            f"{directory} has no model weights (*.safetensors); "
            "save them with model.save_pretrained(dir)"
        )
    if not allow_pickle:
        raise ModelLoadError(
            f"{directory} has only pickle weights (pytorch_model*.bin), which can run code when "
            "loaded; convert them once in a trusted environment "
            "(from_pretrained(dir) then save_pretrained(dir), which writes model.safetensors) "
            "or pass allow_pickle=True if you trust their source"
        )
    return False


def check_checkpoint(path: str) -> None:
    """What :func:`load_checkpoint` would fail on before it reads any weights: the folder,
    its ``config.json``, safetensors weights and tokenizer files (no torch import).

    Raises:
        ModelLoadError: one line naming the folder and what to do.
    """
    directory = Path(path).expanduser()
    read_config(directory)
    check_weights(directory, allow_pickle=True)
    _check_tokenizer_files(directory)


def _check_tokenizer_files(directory: Path) -> None:
    if not any(_is_tokenizer_file(p.name) for p in directory.iterdir()):
        raise ModelLoadError(
            f"{directory} has no tokenizer files (tokenizer.json, tokenizer.model, vocab ...); "
            "save the tokenizer next to the weights with tokenizer.save_pretrained(dir)"
        )


def load_checkpoint(path: str, options: HFOptions) -> tuple[Any, Any]:
    """Load model and tokenizer from a local directory, in eval mode on the chosen device.

    Returns:
        ``(model, tokenizer)``: an ``AutoModelForCausalLM`` or, when ``config.json`` says
        ``is_encoder_decoder``, an ``AutoModelForSeq2SeqLM``; and an ``AutoTokenizer``.

    Raises:
        ModelLoadError: the directory, its config, weights or tokenizer are unusable.
    """
    directory = Path(path).expanduser()
    config = read_config(directory)
    use_safetensors = check_weights(directory, options.allow_pickle)
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)

    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    _check_tokenizer_files(directory)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            directory, trust_remote_code=options.trust_remote_code, local_files_only=True
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(
            f"cannot load the tokenizer of {directory} ({_first_line(exc)}); "
            "save it next to the weights with tokenizer.save_pretrained(dir)"
        ) from exc
    auto_class = AutoModelForSeq2SeqLM if config.get("is_encoder_decoder") else AutoModelForCausalLM
    try:
        model = auto_class.from_pretrained(
            directory,
            dtype=dtype,
            device_map={"": device},
            use_safetensors=use_safetensors,
            trust_remote_code=options.trust_remote_code,
            local_files_only=True,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"cannot load hf checkpoint {directory}: {_first_line(exc)}") from exc
    model.eval()
    return model, tokenizer


def context_length(config: Any) -> int | None:
    """Most positions the model takes, from whichever config key its family uses."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


def eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every EOS id the checkpoint declares: in its generation config, its config.json
    (either may list several, e.g. Llama 3's end of turn and end of text) and the tokenizer.

    A checkpoint whose two configs disagree (generation_config.json with only end of text,
    as some releases shipped) still stops at every id either one names.
    """
    ids: list[Any] = []
    for source in (model.generation_config, model.config):
        configured = getattr(source, "eos_token_id", None)
        ids += configured if isinstance(configured, list) else [configured]
    ids.append(tokenizer.eos_token_id)
    return list(dict.fromkeys(int(i) for i in ids if i is not None))


def pad_id(model: Any, tokenizer: Any, eos_token_ids: list[int]) -> int:
    """Any id works for padding (the attention mask hides it); prefer the declared one."""
    for candidate in (tokenizer.pad_token_id, model.generation_config.pad_token_id, *eos_token_ids):
        if candidate is not None:
            return int(candidate)
    return 0


def _is_tokenizer_file(name: str) -> bool:
    return name.startswith(("tokenizer", "vocab", "merges", "spiece")) or name.endswith(".model")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
