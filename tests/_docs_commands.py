"""Every ``ladder ...`` command shown in README.md and docs/*.md, and how to check it against
the CLI without running it (used by tests/test_docs_commands.py).

Where commands are found: fenced code blocks that are shell (``bash``, ``sh``, ``shell``,
``console`` or no language), indented code blocks, and inline code spans. In a block, a
command is a line that starts with ``ladder`` (after a ``$`` prompt and ``VAR=value``
environment assignments); a line ending in ``\\`` continues on the next; ``&&``, ``;`` and
``|`` separate commands; ``#`` starts a comment.

What is relaxed (the one narrow rule): an inline code span with no positional arguments
names a verb in prose (`ladder score`, `ladder eval --no-cache`): its verb and options are
checked, its missing arguments are not.

Synopses are checked too: ``[--json]`` and ``[--resamples N]`` are options like any other
(the brackets are dropped), ``A | B`` alternatives are split, and ``...``/``…`` stands for
"more of the same", so the argument count is then only checked from above.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console", "text"}
ELLIPSES = {"...", "…"}
# `VAR=value ladder ...`: environment assignments before a command (`$(...)` included).
_ENV_PREFIX = re.compile(
    r"""(?:\b[A-Z_][A-Z0-9_]*=(?:\$\([^)]*\)|"[^"]*"|'[^']*'|\S*)\s+)+(?=ladder\b)"""
)


@dataclass(frozen=True)
class DocCommand:
    """One ``ladder`` command as a doc shows it."""

    file: str  # relative to the repository root
    line: int
    text: str  # as written, after the prompt and environment assignments
    inline: bool = False  # from a code span in prose rather than a code block

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def argv(self) -> list[str]:
        """The arguments after ``ladder``, as a shell would split them."""
        return shlex.split(self.text)[1:]


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def collect() -> list[DocCommand]:
    """Every command of every doc file, in file order."""
    found: list[DocCommand] = []
    for path in doc_files():
        found += commands_in(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    return found


def commands_in(text: str, name: str) -> list[DocCommand]:
    """The commands in one Markdown document."""
    lines = text.splitlines()
    found: list[DocCommand] = []
    prose: list[tuple[int, str]] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^\s*(```+|~~~+)\s*([\w+-]*)", lines[i])
        if fence:
            end = next(
                (j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence[1])),
                len(lines),
            )
            if fence[2].lower() in SHELL_LANGUAGES:
                found += _block(lines[i + 1 : end], i + 2, name, console=fence[2] == "console")
            i = end + 1
            continue
        indented = lines[i].startswith("    ") and (i == 0 or not lines[i - 1].strip())
        if indented and not _in_list(lines, i):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            found += _block([line[4:] for line in lines[i:end]], i + 1, name, console=False)
            i = end
            continue
        prose.append((i + 1, lines[i]))
        i += 1
    return found + _inline(prose, name)


def _in_list(lines: list[str], i: int) -> bool:
    """An indented line continuing a list item is prose, not code."""
    for j in range(i - 1, -1, -1):
        if lines[j].strip():
            return bool(re.match(r"^\s*([-*+]|\d+\.)\s", lines[j])) or lines[j].startswith("  ")
    return False


def _block(lines: list[str], first: int, name: str, *, console: bool) -> list[DocCommand]:
    found = []
    pending, start = "", 0
    for offset, raw in _synopses_joined(lines):
        line = raw.strip()
        if not pending:
            if console and not line.startswith("$ "):
                continue  # a console block's output lines
            line = line.removeprefix("$ ")
            start = first + offset
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole, pending = pending + line, ""
        found += [DocCommand(name, start, c) for c in split_commands(whole)]
    return found


def _synopses_joined(lines: list[str]) -> list[tuple[int, str]]:
    """A synopsis wrapped onto lines that start with ``[`` joins its first line."""
    joined: list[tuple[int, str]] = []
    for offset, line in enumerate(lines):
        if joined and line.strip().startswith("[") and joined[-1][1].strip().startswith("ladder"):
            joined[-1] = (joined[-1][0], f"{joined[-1][1]} {line.strip()}")
        else:
            joined.append((offset, line))
    return joined


def split_commands(line: str) -> list[str]:
    """The ``ladder`` commands of one shell line (comments and other programs dropped)."""
    # `[--mode dense|text|hybrid]` lists values of one option, not a pipeline.
    line = re.sub(r"\[[^\]]*\]", lambda m: m[0].replace("|", "/"), line)
    line = _ENV_PREFIX.sub("", line)
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError:  # unbalanced quotes: not a shell line
        return []
    pieces: list[list[str]] = [[]]
    for token in tokens:
        if token and set(token) <= set(";&|"):
            pieces.append([])
        else:
            pieces[-1].append(token)
    commands = []
    for piece in pieces:
        text = shlex.join(piece)
        if text.startswith("ladder ") or text == "ladder":
            commands.append(text)
    return commands


def _inline(prose: list[tuple[int, str]], name: str) -> list[DocCommand]:
    # Code spans may wrap across lines: search the joined paragraph text.
    text = "\n".join(line for _, line in prose)
    numbers = [n for n, _ in prose]
    found = []
    for match in re.finditer(r"(?<!`)`(ladder(?:\s[^`]*)?)`(?!`)", text):
        line = numbers[text.count("\n", 0, match.start())]
        span = " ".join(match[1].split())
        found += [DocCommand(name, line, c, inline=True) for c in split_commands(span)]
    return found


# --- checking a command against the CLI's command tree --------------------------------------
# Typer builds the tree from its own copy of click's classes: groups have ``commands``,
# parameters say ``param_type_name`` "option" or "argument".

HELP = {"-h", "--help"}


def _is_group(command: Any) -> bool:
    return hasattr(command, "commands")


def resolve(root: Any, argv: list[str]) -> tuple[Any, list[str], list[str]]:
    """The (sub)command ``argv`` names, the command path, and the rest of the arguments.

    Global options before the verb are checked against the root group.

    Raises:
        AssertionError: an unknown verb or global option.
    """
    command = root
    path: list[str] = []
    rest = list(argv)
    while _is_group(command):
        rest = _take_options(command, rest, stop_at_argument=True, path=path)[0]
        if not rest:
            return command, path, rest
        verb = rest.pop(0)
        sub = command.commands.get(verb)
        assert sub is not None, f"`{' '.join(['ladder', *path])}` has no command {verb!r}"
        command, path = sub, [*path, verb]
    return command, path, rest


def check(root: Any, argv: list[str], *, mention: bool = False) -> None:
    """Parse ``argv`` as the CLI would, without running it: the verb exists, every option
    exists on it, options that take a value have one, and the positionals fit.

    ``mention``: a code span in prose that names a verb, perhaps with options, and no
    arguments (`ladder eval --no-cache`): its missing arguments are not an error.

    Raises:
        AssertionError: what does not fit, in words.
    """
    argv = _unsynopsis(argv)
    ellipsis = any(a in ELLIPSES for a in argv)
    argv = [a for a in argv if a not in ELLIPSES]
    command, path, rest = resolve(root, argv)
    if HELP & set(rest):
        return
    positionals, helped = _take_options(command, rest, stop_at_argument=False, path=path)
    if helped:
        return
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    most = None if any(a.nargs == -1 for a in arguments) else sum(a.nargs for a in arguments)
    least = sum(max(a.nargs, 1) if a.required else 0 for a in arguments)
    shown = " ".join(["ladder", *path])
    if most is not None:
        assert len(positionals) <= most, (
            f"`{shown}` takes at most {most} argument(s), got {len(positionals)}: {positionals}"
        )
    if not ellipsis and not _is_group(command) and not (mention and not positionals):
        assert len(positionals) >= least, (
            f"`{shown}` needs {least} argument(s), got {len(positionals)}: {positionals}"
        )


def _take_options(
    command: Any, args: list[str], *, stop_at_argument: bool, path: list[str]
) -> tuple[list[str], bool]:
    """The arguments left once ``command``'s options (and their values) are taken out."""
    options: dict[str, Any] = {}
    for param in command.params:
        if param.param_type_name == "option":
            for name in (*param.opts, *param.secondary_opts):
                options[name] = param
    rest: list[str] = list(args)
    positionals: list[str] = []
    helped = False
    while rest:
        token = rest[0]
        if token == "--":
            positionals += rest[1:]
            break
        if not token.startswith("-") or token == "-" or re.fullmatch(r"-\d.*", token):
            if stop_at_argument:
                return rest, helped
            positionals.append(rest.pop(0))
            continue
        rest.pop(0)
        name, eq, _ = token.partition("=")
        if name in HELP:
            helped = True
            continue
        option = options.get(name)
        shown = " ".join(["ladder", *path]) if path else "ladder"
        assert option is not None, f"`{shown}` has no option {name}"
        takes_value = not option.is_flag and not option.count
        if takes_value and not eq:
            assert rest, f"`{shown}` option {name} needs a value"
            for _ in range(option.nargs):
                rest.pop(0)
        if not takes_value:
            assert not eq, f"`{shown}` option {name} is a flag; it takes no value"
    return positionals, helped


def _unsynopsis(argv: list[str]) -> list[str]:
    """A synopsis as plain arguments: brackets dropped, ``A|B`` alternatives reduced to A."""
    out = []
    for token in argv:
        token = token.strip("[]")
        if not token:
            continue
        if "|" in token and token.startswith("-"):
            token = token.split("|")[0]
        out.append(token)
    return out
