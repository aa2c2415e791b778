"""Tools for ReAct agents, behind one registry.

A tool is anything with ``name``, ``description`` and ``run(input: str) -> str`` (the
:class:`Tool` Protocol). It joins with one call::

    from ladder.prompts.tools import register_tool
    register_tool(MyTool())

Built in: ``calculator`` (arithmetic by parsing), ``python`` (a sandboxed subprocess),
``search`` (a registered retriever; BM25 in memory until the RAG knowledge base lands) and
``http_get`` (off until registered again with an allow-list of hosts).
"""

from __future__ import annotations

from ladder.errors import ConfigError
from ladder.prompts.tools.base import Tool, ToolError
from ladder.prompts.tools.calculator import Calculator
from ladder.prompts.tools.http_get import HttpGetTool
from ladder.prompts.tools.python import PythonTool, SandboxLayers, sandbox_layers
from ladder.prompts.tools.search import (
    BM25Retriever,
    Hit,
    Retriever,
    SearchTool,
    get_retriever,
    register_retriever,
    retriever_names,
)

__all__ = [
    "BM25Retriever",
    "Calculator",
    "Hit",
    "HttpGetTool",
    "PythonTool",
    "Retriever",
    "SandboxLayers",
    "SearchTool",
    "Tool",
    "ToolError",
    "get_retriever",
    "get_tool",
    "register_retriever",
    "register_tool",
    "retriever_names",
    "sandbox_layers",
    "tool_names",
]

_TOOLS: dict[str, Tool] = {}


def register_tool(tool: Tool) -> None:
    """Make ``tool`` available by its name, replacing a tool of the same name.

    Raises:
        ConfigError: the object is not a tool, or its name is not one word.
    """
    if not isinstance(tool, Tool):
        raise ConfigError(f"{tool!r} is not a tool: it needs name, description and run(input)")
    if not tool.name or not tool.name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"tool name {tool.name!r}: use one word (letters, digits, _ or -)")
    _TOOLS[tool.name] = tool


def tool_names() -> list[str]:
    """The registered tool names, sorted."""
    return sorted(_TOOLS)


def get_tool(name: str) -> Tool:
    """The tool registered as ``name``.

    Raises:
        ConfigError: no tool has that name; the message lists the valid ones.
    """
    if name not in _TOOLS:
        raise ConfigError(f"unknown tool {name!r}: valid tools are {', '.join(tool_names())}")
    return _TOOLS[name]


for _tool in (Calculator(), PythonTool(), SearchTool(), HttpGetTool()):
    register_tool(_tool)
