"""A worker for the concurrency test: records trials one by one into a shared tuning database.

    python concurrent_writer.py URL WORKER N START_FILE

Opens the store, creates START_FILE.ready-WORKER, waits until START_FILE exists so the workers begin
together, then records N trials (some failed) as host `worker-WORKER`, each in its own transaction,
as a tuner does (with a pause between). Prints nothing.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from db_testdata import GLA_FWD, H100, LINEAR_FWD, TrialFactory

from slagen.db import TuningStore


def main(url: str, worker: int, n: int, start_file: Path) -> None:
    factory = TrialFactory()
    with TuningStore(url) as store:
        start_file.with_name(f"{start_file.name}.ready-{worker}").touch()
        deadline = time.monotonic() + 120
        while not start_file.exists():
            if time.monotonic() > deadline:
                raise SystemExit("start file never appeared")
            time.sleep(0.002)
        for i in range(n):
            status = "compile_error" if i % 5 == 4 else "ok"
            factory.record(
                store, kernel=(LINEAR_FWD, GLA_FWD)[i % 2], device=H100, config={"worker": worker, "i": i},
                status=status, median_ms=None if status != "ok" else 1.0 + ((i * 7 + worker * 3) % 13) / 10,
                host=f"worker-{worker}",
            )
            time.sleep(0.005)  # a tuner times between writes; back-to-back commits let SQLite starve the other


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
