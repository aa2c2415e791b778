"""Ladder's home folder: everything kept between runs lives under one directory.

``LADDER_HOME`` when set, else the per-user data directory (``platformdirs``).
Sub-folders: ``models/`` (built-in checkpoints), ``kb/`` (knowledge bases),
``cache/`` (response cache, MLflow's empty-store template). The tracking store lives in the
project folder (``ladder-runs.db``), not here.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

__all__ = ["home_subdir", "ladder_home"]


def ladder_home() -> Path:
    """The home folder, created on first use."""
    env = os.environ.get("LADDER_HOME")
    home = Path(env).expanduser() if env else Path(platformdirs.user_data_dir("ladder"))
    home.mkdir(parents=True, exist_ok=True)
    return home


def home_subdir(name: str) -> Path:
    """A named sub-folder of the home folder (``models``, ``kb``, ``cache`` ...), created."""
    path = ladder_home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path
