"""What a tool is: a name, a description the model reads, and ``run(input) -> str``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Tool", "ToolError"]


class ToolError(Exception):
    """A tool refused or failed on its input; the agent shows the message as the observation.

    Not a :class:`~ladder.errors.LadderError`: the model, not the user, made the mistake, and
    the agent feeds it back to the model instead of stopping.
    """


@runtime_checkable
class Tool(Protocol):
    """A tool a ReAct agent can call (Yao et al. 2022, https://arxiv.org/abs/2210.03629).

    ``name`` is what the model writes after ``Action:``; ``description`` is shown to the
    model in the prompt; :meth:`run` takes the text after ``Action Input:`` and returns the
    observation. Expected failures raise :class:`ToolError`.
    """

    @property
    def name(self) -> str:
        """The name the model uses to call the tool (one word)."""
        ...

    @property
    def description(self) -> str:
        """One or two sentences for the prompt: what the tool does and what input it takes."""
        ...

    def run(self, input: str) -> str:
        """Run the tool on ``input`` and return the observation text."""
        ...
