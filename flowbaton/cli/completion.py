"""``flowbaton completion bash``: a shell completion script made from the parser.

Generated from the very parser the commands use, so it never goes out of
date: commands, each command's options, and the states and the listing's
flow ids where an argument takes them (file names after an option whose
value is a ``FILE``). Written here rather than taken from argcomplete,
which would import and run the whole CLI on every <Tab> press (a backend
connection included, for flow ids) and needs a global hook in
the user's shell; this script is plain bash, loaded once. zsh users load it
with ``autoload -U bashcompinit && bashcompinit``.
"""

from __future__ import annotations

import argparse
import shlex

from ..backends.states import FLOW_STATES

__all__ = ["SHELLS", "completion_script"]

SHELLS = ("bash",)

_TEMPLATE = """\
# flowbaton completion for bash; install with:
#   flowbaton completion bash > ~/.local/share/bash-completion/completions/flowbaton
_flowbaton() {{
    local cur prev command i
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    command=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${{COMP_WORDS[i]}}" in
            -*) ;;
            *) if [[ " {commands} " == *" ${{COMP_WORDS[i]}} "* ]]; then command="${{COMP_WORDS[i]}}"; break; fi ;;
        esac
    done
    if [[ "$prev" == "--state" ]]; then
        COMPREPLY=($(compgen -W {states} -- "$cur")); return
    fi
    if [[ " {files} " == *" $prev "* ]]; then
        COMPREPLY=(); return  # none: bash completes a file name (-o default)
    fi
    case "$command" in
{cases}
        "") COMPREPLY=($(compgen -W {top} -- "$cur")) ;;
    esac
}}
complete -o default -F _flowbaton flowbaton
"""


def _options(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(s for action in parser._actions for s in action.option_strings if s.startswith("--"))


def _file_options(commands: dict[str, argparse.ArgumentParser]) -> list[str]:
    """Options of any command whose value is a file (metavar ``FILE``)."""
    return sorted({s for cmd in commands.values() for action in cmd._actions if action.metavar == "FILE"
                   for s in action.option_strings})


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for ``shell`` (one of ``SHELLS``)."""
    if shell not in SHELLS:
        raise ValueError(f"no completion for {shell!r}; one of {', '.join(SHELLS)}")
    commands = _subcommands(parser)
    cases = "\n".join(
        f"        {name}) COMPREPLY=($(compgen -W {shlex.quote(' '.join(_options(cmd)))} -- \"$cur\")) ;;"
        for name, cmd in sorted(commands.items())
    )
    return _TEMPLATE.format(commands=" ".join(sorted(commands)), states=shlex.quote(" ".join(sorted(FLOW_STATES))),
                            files=" ".join(_file_options(commands)), cases=cases,
                            top=shlex.quote(" ".join([*sorted(commands), *_options(parser)])))
