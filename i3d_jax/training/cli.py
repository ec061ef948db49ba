"""What `train.py` and `eval.py` share: absl flag parsing that reports a bad flag, config file or
config field as `error: ...` (exit 1, no traceback) before anything heavy runs."""

from __future__ import annotations

import ast
import sys
from collections.abc import Sequence

from absl import flags


def parse_flags(argv: Sequence[str]) -> list[str]:
    """`flags.FLAGS(argv)`; a misspelt flag or `--config.field`, a bad value or a config file that
    does not load exits with `error: <what was wrong>` on stderr."""
    try:
        rest = flags.FLAGS(list(argv))
        if "config" in flags.FLAGS:
            flags.FLAGS.config.keys()  # a config file that failed to load raises here
        return rest
    except (flags.Error, OSError, AttributeError, KeyError, ValueError, TypeError) as e:
        text = str(e)
        if text[:1] in "'\"" and text[:1] == text[-1:]:  # a KeyError/AttributeError shows a repr
            try:
                text = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                pass
        message = " ".join(line.strip() for line in text.splitlines() if line.strip())
        sys.exit(f"error: {message} (see {argv[0]} --help)")
