"""Prompt engineering: templates, strategies, structured output, chains and agents."""
