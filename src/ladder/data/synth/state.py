"""What a self-instruct run has done so far: kept tasks, drop counts, the round reached.

The state is saved beside the output after every round (``NAME.state.json``, written
atomically), so ``--resume`` continues exactly where a stopped run was: each round's
random choices depend only on the seed, the round number and the pool, never on what
happened in this process before. The state carries a fingerprint of the settings that
shape the tasks (seed file hash, generator, sampling, filters); resuming with different
ones is refused. ``n``, ``max_rounds`` and the output format may change between runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ladder.data.io import file_sha256
from ladder.data.synth.config import SynthConfig
from ladder.data.synth.filters import REASONS
from ladder.errors import ConfigError
from ladder.fsutil import atomic_write_text

__all__ = ["Paths", "SynthState", "settings_fingerprint"]

STATE_VERSION = 1
EXAMPLES_PER_REASON = 3
# Settings that may differ between a run and its resumption.
_FREE = {"out", "n", "max_rounds", "format", "cache", "resume"}


@dataclass(frozen=True)
class Paths:
    """The output file and the files written beside it."""

    out: Path
    report: Path
    state: Path

    @classmethod
    def for_out(cls, out: str | Path) -> Paths:
        """``x.jsonl`` → ``x.report.json`` and ``x.state.json`` in the same folder.

        Raises:
            ConfigError: ``out`` does not end in ``.jsonl``.
        """
        path = Path(out)
        if path.suffix.lower() != ".jsonl":
            raise ConfigError(f"--out {out}: the output is JSON lines; give a .jsonl file name")
        stem = path.with_suffix("")
        return cls(path, Path(f"{stem}.report.json"), Path(f"{stem}.state.json"))


def settings_fingerprint(cfg: SynthConfig) -> dict[str, Any]:
    """The settings that shape the generated tasks, with the seed file's SHA-256."""
    settings = cfg.model_dump(exclude=_FREE)
    settings["seeds"] = file_sha256(cfg.seeds)
    return settings


@dataclass
class SynthState:
    """Progress of one run; see the module docstring."""

    fingerprint: dict[str, Any]
    round: int = 0
    prompts: int = 0
    kept: list[dict[str, str]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def note_drop(self, reason: str, text: str, detail: str) -> None:
        """Count a dropped task and keep the first few as examples for the report."""
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < EXAMPLES_PER_REASON:
            shown.append({"text": text[:500], "detail": detail})

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready state."""
        return {
            "version": STATE_VERSION,
            "fingerprint": self.fingerprint,
            "round": self.round,
            "prompts": self.prompts,
            "kept": self.kept,
            "dropped": self.dropped,
            "examples": self.examples,
        }

    def save(self, path: Path) -> None:
        """Write the state atomically to ``path``."""
        atomic_write_text(path, json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path, fingerprint: dict[str, Any]) -> SynthState:
        """The state a stopped run saved, checked against this run's settings.

        Raises:
            ConfigError: the file is unreadable, or was made with other settings.
        """
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"state version {data.get('version')}")
            state = cls(
                fingerprint=data["fingerprint"],
                round=int(data["round"]),
                prompts=int(data["prompts"]),
                kept=list(data["kept"]),
                dropped=dict(data["dropped"]),
                examples=dict(data["examples"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{path}: not a readable self-instruct state ({exc}); delete it and run "
                "without --resume"
            ) from None
        changed = sorted(
            k
            for k in fingerprint.keys() | state.fingerprint.keys()
            if fingerprint.get(k) != state.fingerprint.get(k)
        )
        if changed:
            raise ConfigError(
                f"{path}: the stopped run used different settings ({', '.join(changed)}); "
                "use the same ones to resume, or run without --resume to start afresh"
            )
        return state
