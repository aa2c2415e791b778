"""Inference engines ladder runs as managed child processes (vLLM's server).

Each engine module starts its server in a process group of its own, waits until it is
healthy, turns a failure into one line naming its cause, and never lets the child outlive
ladder.
"""

__all__: list[str] = []
