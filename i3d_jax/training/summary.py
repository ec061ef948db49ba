"""What `train.py` prints about a run's end (no JAX, no training code: a finished run's summary
prints from its workdir's records alone)."""

from __future__ import annotations


def summary_lines(out: dict) -> list[str]:
    """Steps trained in this call, time, loss, how it ended (`loop.train_and_evaluate`'s or
    `contract.finished_run`'s summary)."""
    if out.get("finished_before"):
        done = "final evaluation run now" if out.get("evaluated_now") else "results unchanged"
        lines = [f"already finished: {out['steps']} steps (nothing to train; {done})"]
        if out.get("not_applied"):
            changed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in out["not_applied"].items())
            lines.append(
                f"  config changes not applied (the run is finished): {changed}; evaluate with "
                "other settings with eval.py"
            )
        return lines
    start = out.get("start_step", 0) or 0
    resumed = f" (resumed at step {start})" if start else ""
    line = (
        f"trained {out['steps'] - start} steps in {out['wall_s']:.0f} s{resumed}; "
        f"final loss {out['final_loss']:.4f}"
    )
    if out.get("interrupted"):
        line += " (interrupted by SIGTERM: checkpoint saved; run the same command to resume)"
    return [line]
