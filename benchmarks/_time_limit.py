"""What a benchmark prints when a time limit (`timeout`'s SIGTERM) stops it: its JSON so far."""

from __future__ import annotations

import contextlib
import json
import os
import signal


@contextlib.contextmanager
def printed_on_sigterm(result: dict, now: dict, finished: str = "rows"):
    """Within: SIGTERM stops the pipeline's workers (`now["iterator"]`, if any), prints `result`
    as it stands with a note naming `now["what"]` (what was running), and exits with status 124."""

    def on_term(signum, frame):
        result.setdefault("notes", []).append(
            f"stopped by signal {signum} (a time limit) during: {now.get('what')}; "
            f"the {finished} above finished"
        )
        it = now.get("iterator")
        if it is not None and hasattr(it, "close"):
            it.close()
        print(json.dumps(result), flush=True)
        os._exit(124)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
