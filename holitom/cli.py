"""The `holitom` command line (also `python -m holitom`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import import_module

from llava.errors import HookError

# subcommand → (module, help); each module exposes add_<name>_arguments(parser) and run_<name>(args).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "make-tiny": ("holitom.tools.tiny", "write a small random checkpoint in the published layout (lmms-lab, llava-hf, Qwen)"),
    "generate": ("holitom.tools.generate", "answer a question about a video (vanilla or a reduction method)"),
    "flops": ("holitom.flops", "prefill FLOPs as the paper counts them"),
    "bench": ("holitom.tools.bench", "time-to-first-token and decode speed, vanilla vs methods"),
    "tables": ("holitom_eval.report", "paper-style tables and a FLOPs-vs-accuracy plot from lmms-eval results"),
    "demo": ("holitom.tools.demo", "tiny checkpoint + synthetic video + vanilla vs HoliTom generation (no downloads)"),
    "smoke-setup": ("holitom_eval.smoke", "tiny checkpoint + smoke-task videos for `python -m lmms_eval` (prints the command)"),
}


def _entry(name: str) -> tuple[Callable, Callable]:
    module = import_module(SUBCOMMANDS[name][0])
    stem = name.replace("-", "_")
    return getattr(module, f"add_{stem}_arguments"), getattr(module, f"run_{stem}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="holitom", description="HoliTom: holistic token merging for video LLMs")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if only == name:
            _entry(name)[0](sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    # Only the chosen subcommand's module is imported: `holitom flops` stays fast and light.
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code = int(_entry(args.command)[1](args) or 0)
        sys.stdout.flush()  # inside the try: a reader that went away is handled below, not at exit
        return code
    except (ValueError, FileNotFoundError, HookError) as exc:
        print(f"holitom {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`holitom flops --json | head`): stop quietly, as a Unix filter does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
