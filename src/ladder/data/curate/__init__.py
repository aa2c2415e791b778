"""Corpus curation: raw text files in, a filtered, deduplicated, sharded JSONL corpus out.

``curate(sources, out, config)`` is the one entry point; :class:`Curator` judges single
documents (what the pipeline and the tests use). See docs/curation.md for the rules.
"""

from ladder.data.curate.config import CurationConfig
from ladder.data.curate.pipeline import Curator, EmptyCorpusError, Verdict, curate
from ladder.data.curate.report import RULES, CurationReport

__all__ = [
    "RULES",
    "CurationConfig",
    "CurationReport",
    "Curator",
    "EmptyCorpusError",
    "Verdict",
    "curate",
]
