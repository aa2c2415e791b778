"""ladder: scope, select, adapt, evaluate, integrate and track open-source LLMs.

The public surface is small and explicit; everything else is private to its module.
"""

from ladder.errors import LadderError
from ladder.models import load_model
from ladder.models.base import Completion, GenerationParams, LanguageModel, ModelInfo

__version__ = "0.1.0"

__all__ = [
    "Completion",
    "GenerationParams",
    "LadderError",
    "LanguageModel",
    "ModelInfo",
    "__version__",
    "load_model",
]
