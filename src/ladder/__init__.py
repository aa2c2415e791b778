"""ladder: scope, select, adapt, evaluate, integrate and track open-source LLMs.

The public surface is small and explicit; everything else is private to its module.
"""

from typing import TYPE_CHECKING, Any

from ladder.errors import LadderError
from ladder.models import load_model
from ladder.models.base import Completion, GenerationParams, LanguageModel, ModelInfo

if TYPE_CHECKING:
    from ladder.rag.kb import KnowledgeBase

__version__ = "0.1.0"

__all__ = [
    "Completion",
    "GenerationParams",
    "KnowledgeBase",
    "LadderError",
    "LanguageModel",
    "ModelInfo",
    "__version__",
    "load_model",
]


def __getattr__(name: str) -> Any:
    # KnowledgeBase pulls in LanceDB and pyarrow: imported on first use, so `import ladder`
    # stays cheap (PEP 562 module attribute).
    if name == "KnowledgeBase":
        from ladder.rag.kb import KnowledgeBase

        return KnowledgeBase
    raise AttributeError(f"module 'ladder' has no attribute {name!r}")
