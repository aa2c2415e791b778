"""Prompt engineering: templates, strategies, structured output, chains and agents."""

# The built-in strategies join the registry from here, like any other (the registry names none).
from ladder.prompts import builtin_strategies  # noqa: F401
