"""A deterministic synthetic cost model, injectable as the tuner's measure function.

Timing-dependent logic (search, budgets, failure handling, the database, parallel workers) is tested
with it where no GPU is present. A config's time is a smooth bowl around `optimum` (distance in index
steps along each integer axis, plus a penalty for a differing enum value), so the known optimum is the
unique minimum. Chosen configs can be made to fail with any status. Instances pickle, so spawned
workers can use them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from .measure import Measurement, TrialContext


@dataclass(frozen=True)
class SyntheticCost:
    optimum: Mapping[str, Any]
    base_ms: float = 1.0
    step_ms: float = 0.25
    # config JSON -> status, for configs that should fail ("mismatch", "compile_error", ...)
    failures: Mapping[str, str] = field(default_factory=dict)
    sleep_s: float = 0.0  # wall time each measurement takes (for budget-in-seconds tests)
    log_path: str | None = None  # append each measured config JSON here (counts across processes)

    def cost(self, ctx: TrialContext) -> float:
        total = self.base_ms
        for axis in ctx.plan.axes:
            value, best = ctx.config[axis.name], self.optimum.get(axis.name)
            if best is None:
                continue
            if axis.is_int:
                ordered = sorted(axis.choices)
                total += self.step_ms * abs(ordered.index(value) - ordered.index(best)) ** 1.5
            elif value != best:
                total += 2 * self.step_ms
        return total

    def __call__(self, ctx: TrialContext) -> Measurement:
        if self.sleep_s:
            time.sleep(self.sleep_s)
        if self.log_path is not None:
            with open(self.log_path, "a") as handle:
                handle.write(ctx.config.to_json() + "\n")
        status = self.failures.get(ctx.config.to_json())
        ms = self.cost(ctx)
        if status == "mismatch":
            # a wrong kernel is never timed, however fast it would be
            return Measurement("mismatch", max_error=0.5, message="synthetic mismatch", wall_s=self.sleep_s)
        if status is not None:
            return Measurement(status, message=f"synthetic {status}", wall_s=self.sleep_s)
        return Measurement("ok", median_ms=ms, p20_ms=ms * 0.98, p80_ms=ms * 1.02, n_repeats=10, max_error=0.0,
                           wall_s=self.sleep_s)
