"""`slagen tune` as a plain function: the click layer parses options, calls this and renders events.

The listener gets a `TuneEvent` per trial with trials done / planned (`done`, `total`; total is None
when only a time budget bounds the run), the best time so far of that search (`best_ms`) and the
run's failures by kind (`failures`), which is what a progress bar shows.
"""

from __future__ import annotations

from .events import Listener
from .tuner import TuneReport, tune


def check_can_run_kernels() -> None:
    """Refuse to start a tuning run that could only record a failed compile per trial."""
    import torch

    from ..env import interpreter_mode
    from .search import SearchError

    if not torch.cuda.is_available() and not interpreter_mode():
        raise SearchError("tune: no CUDA GPU is visible and TRITON_INTERPRET is not set, so no kernel can run "
                          "here; run on a GPU (or set TRITON_INTERPRET=1 to tune the plumbing on the CPU)")


def run_tune(spec_name_or_path: str, shapes_text: str, db_url: str | None = None, budget_trials: int | None = None,
             budget_seconds: float | None = None, sampler: str = "tpe", workers: int = 1, seed: int = 0,
             listener: Listener | None = None) -> TuneReport:
    """Tune a built-in variant or a TOML spec for `BxTxH,...` shapes into the database at `db_url`
    (default: `SLAGEN_DB`, else a SQLite file under the cache) on this machine's device."""
    from ..db import TuningStore
    from ..env import default_db_url
    from ..spec import load_spec, parse_shapes
    from .fingerprint import detect

    spec = load_spec(spec_name_or_path)
    shapes = parse_shapes(shapes_text)
    check_can_run_kernels()
    with TuningStore(db_url or default_db_url()) as store:
        return tune(spec, shapes, store=store, device=detect(), budget_trials=budget_trials,
                    budget_seconds=budget_seconds, sampler=sampler, seed=seed, listener=listener, workers=workers)
