"""The command-line conventions every tool shares: one flag spelling, `error: ...`, exit codes.

- Flags are `--snake_case`; the `--kebab-case` spelling of each is accepted too (not shown).
- `--help` shows every flag with its default.
- A bad argument, or a bad input found before any work (weights, labels, a missing file), prints
  `error: <what and what was expected>` on stderr and exits with status 2 (`UsageError`).
- A failure during the work (a video that does not decode, a run that stops) prints `error: ...`
  and exits with status 1; a tool that goes on past failed items also exits 1.
No traceback for either: the message names the thing and what was expected.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence

EXIT_FAILED = 1
EXIT_USAGE = 2
# What a user's input or environment can raise (TrainingError is a RuntimeError).
USER_ERRORS = (ValueError, OSError, RuntimeError, ImportError, KeyError)


class UsageError(ValueError):
    """A bad argument or input, found before any work (exit status 2)."""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


class ArgumentParser(argparse.ArgumentParser):
    """`argparse.ArgumentParser` with the conventions above (`error:` lines, exit 2, both
    spellings of every long flag, defaults in `--help`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        out = []
        for i, token in enumerate(args):
            if token == "--":
                out += args[i:]
                break
            out.append(self._canonical(token))
        return super().parse_known_args(out, namespace)

    def _canonical(self, token: str) -> str:
        if not token.startswith("--") or token in self._option_string_actions:
            return token
        name, eq, value = token.partition("=")
        snake = name.replace("-", "_")
        snake = "--" + snake[2:]
        return snake + eq + value if snake in self._option_string_actions else token

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: {message} (see {self.prog} --help)\n")


def message(error: BaseException) -> str:
    """The error's text on one line (the quotes of a repr, e.g. a KeyError's, removed)."""
    text = str(error)
    if text[:1] in "'\"" and text[:1] == text[-1:]:  # a KeyError or absl error shows a repr
        try:
            text = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            pass
    return " ".join(line.strip() for line in str(text).splitlines() if line.strip()) or repr(error)


@contextlib.contextmanager
def before_work() -> Iterator[None]:
    """Errors of the block (checking arguments, weights, inputs) become `UsageError` (exit 2)."""
    try:
        yield
    except UsageError:
        raise
    except USER_ERRORS as e:
        raise UsageError(message(e)) from e


def fail(text: str, code: int = EXIT_FAILED) -> int:
    """Prints `error: text` on stderr and returns `code`."""
    print(f"error: {text}", file=sys.stderr, flush=True)
    return code


def run(work: Callable[..., int | None], *args) -> int:
    """`work(*args)`'s exit status; `UsageError` -> `error: ...`, 2; other user errors -> 1.
    Warnings print as `warning: ...` lines (no source line)."""
    shown = warnings.showwarning
    warnings.showwarning = show_warning
    try:
        return int(work(*args) or 0)
    except UsageError as e:
        return fail(message(e), EXIT_USAGE)
    except USER_ERRORS as e:
        return fail(message(e), EXIT_FAILED)
    finally:
        warnings.showwarning = shown


def show_warning(msg, category, filename, lineno, file=None, line=None) -> None:
    """`warnings.showwarning` of the commands: one ``warning: ...`` line on stderr."""
    if issubclass(category, DeprecationWarning):
        return
    print(f"warning: {msg}", file=sys.stderr, flush=True)
