"""Search strategies over a pruned space, on Optuna (the only module that imports it).

Encoding. An integer axis is an Optuna int parameter over the *index* of its sorted choices, so
neighbouring indices are neighbouring block sizes (a log scale for powers of two): TPE's Parzen
estimators and CMA-ES both see an ordered dimension. An enum axis is a categorical parameter. CMA-ES has
no categorical dimension, so Optuna hands enum axes to its independent sampler (TPE here, seeded) while
CMA-ES (with margin, for discrete dimensions) drives the integer ones.

Strategies. "tpe" (default) and "cmaes" start from the plan's heuristic default (enqueued first);
"random" samples uniformly; "grid" enqueues every feasible config, default first, and is exhaustive
within its budget. Optuna's GridSampler needs a product space and ours is pruned, so grid is a queue.

Failed configs are told to Optuna as pruned: TPE ranks them below every timed one and CMA-ES ignores
them, which is what timing them as infinite (Triton's autotuner) would mean. Configs outside the pruned
space, duplicates of recorded ones and configs another worker is measuring are never measured: a
recorded result is reused, the rest are told as pruned and do not count against the trial budget.

Each search runs Optuna's own loop (`study.optimize`, stopped with `study.stop()`). Several workers share
one study in Optuna's RDB storage (SQLite or PostgreSQL, with their locking; see `open_storage`). Before a
worker measures a config it claims it the way Optuna's FAQ skips duplicate samples, by reading the
study's trials: a config another trial of this run has claimed, or that the study already holds a value
for, is not measured again. The read and the claim (a user attribute of the trial) are one step under a
per-study file lock, as are the budget's count of this run's claims, so two workers of a run on one
machine never measure one config twice or pass the budget. (`MaxTrialsCallback` counts trials only as
they finish, so N workers could overshoot by N - 1, and it counts proposals that measured nothing.)
"""

from __future__ import annotations

import contextlib
import math
import random
import time
import warnings
from dataclasses import dataclass
from typing import Callable, ContextManager

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from ..codegen import Axis, ConfigError, KernelConfig
from .space import SearchSpace

SAMPLERS = ("tpe", "cmaes", "random", "grid")
# Proposals in a row that measure nothing (duplicates, pruned, claimed) before a fresh config is forced.
MAX_IDLE_PROPOSALS = 8

optuna.logging.set_verbosity(optuna.logging.WARNING)


class SearchError(ValueError):
    """A search setting is not one slagen accepts; the message names it and what is allowed."""


@dataclass(frozen=True)
class SearchStats:
    measured: int
    reused: int
    proposals: int
    stopped: str  # "trials" | "seconds" | "exhausted"


def _sorted_choices(axis: Axis) -> tuple:
    return tuple(sorted(axis.choices)) if axis.is_int else tuple(axis.choices)


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    dists: dict[str, BaseDistribution] = {}
    for axis in space.axes:
        if axis.is_int:
            dists[axis.name] = IntDistribution(0, len(axis.choices) - 1)
        else:
            dists[axis.name] = CategoricalDistribution(axis.choices)
    return dists


def encode(space: SearchSpace, config: KernelConfig) -> dict[str, int | str]:
    params: dict[str, int | str] = {}
    for axis in space.axes:
        value = config[axis.name]
        params[axis.name] = _sorted_choices(axis).index(value) if axis.is_int else value
    return params


def _suggest(space: SearchSpace, trial: optuna.Trial) -> KernelConfig | None:
    """The proposed config, validated by the plan; None when it lies outside the pruned space."""
    values: dict[str, int | str] = {}
    for axis in space.axes:
        if axis.is_int:
            values[axis.name] = _sorted_choices(axis)[trial.suggest_int(axis.name, 0, len(axis.choices) - 1)]
        else:
            values[axis.name] = trial.suggest_categorical(axis.name, list(axis.choices))
    try:
        config = space.plan.validate_config(values)
    except ConfigError:  # a cross-axis rule of the plan forbids this combination
        return None
    return config if config in space else None


def make_sampler(name: str, space: SearchSpace, seed: int) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                          n_startup_trials=min(10, max(3, len(space) // 4)))
    if name == "cmaes":
        try:
            import cmaes  # noqa: F401 - Optuna's CMA-ES sampler needs it
        except ImportError:
            raise SearchError("sampler: 'cmaes' needs the cmaes package (pip install cmaes)") from None
        # The default is enqueued as the first trial, so CMA-ES needs no x0 (deprecated in Optuna 4.9).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # with_margin
            return optuna.samplers.CmaEsSampler(
                seed=seed, with_margin=True, warn_independent_sampling=False,
                independent_sampler=optuna.samplers.TPESampler(seed=seed),
            )
    if name in ("random", "grid"):
        return optuna.samplers.RandomSampler(seed=seed)
    raise SearchError(f"sampler: expected one of {SAMPLERS}, got {name!r}")


# --- storage ----------------------------------------------------------------------------------------


def open_storage(store_url: str | None) -> optuna.storages.BaseStorage:
    """In-memory for a single process without a URL, else Optuna's RDB storage in the slagen store's own
    database (slagen's tables are prefixed `slagen_`, so Optuna's `trials` and `alembic_version` fit beside
    them). slagen's tables stay the source of truth; Optuna's only coordinate the workers. On SQLite its
    engine gets the store's locking (`slagen.db.engine.use_sqlite_locking`): writers wait for each other."""
    if store_url is None:
        return optuna.storages.InMemoryStorage()
    from ..db.engine import SQLITE_BUSY_TIMEOUT_MS, parse_url, use_sqlite_locking

    backend = parse_url(store_url).get_backend_name()
    kwargs: dict = {"pool_pre_ping": True} if backend == "postgresql" else {}
    if backend == "sqlite":
        kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}}
    storage = optuna.storages.RDBStorage(store_url, engine_kwargs=kwargs)
    if backend == "sqlite":
        use_sqlite_locking(storage.engine, wal=True, always_immediate=True)
    return storage


# --- the search -------------------------------------------------------------------------------------


class Search:
    """One study for one tuning key (`slagen.identity.TuningKey`: kernel, device, bucket, dtype).

    `prepare` (once, by the process that owns the run) seeds the study with recorded results and
    enqueues the start points; `run` (in each worker) proposes, measures through `evaluate`, and tells.
    `run_id` names this run's claims; `lock` makes a read of the study and a claim one step across the
    run's processes (a no-op for a single process).
    """

    def __init__(self, space: SearchSpace, *, study_name: str, storage: optuna.storages.BaseStorage,
                 sampler: str = "tpe", seed: int = 0, run_id: str = "local",
                 lock: Callable[[], ContextManager] = contextlib.nullcontext) -> None:
        if sampler not in SAMPLERS:
            raise SearchError(f"sampler: expected one of {SAMPLERS}, got {sampler!r}")
        self.space, self.sampler_name, self.seed, self.run_id, self.lock = space, sampler, seed, run_id, lock
        self.study = optuna.create_study(storage=storage, study_name=study_name, direction="minimize",
                                         sampler=make_sampler(sampler, space, seed), load_if_exists=True)

    def prepare(self, known: dict[KernelConfig, float]) -> None:
        present = {t.user_attrs.get("config") for t in self.study.get_trials(deepcopy=False)
                   if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
        dists = distributions(self.space)
        for config, value in known.items():
            if config.to_json() in present:
                continue
            finite = math.isfinite(value)
            self.study.add_trial(optuna.trial.create_trial(
                state=TrialState.COMPLETE if finite else TrialState.PRUNED, value=value if finite else None,
                params=encode(self.space, config), distributions=dists,
                user_attrs={"config": config.to_json(), "source": "store"}))
        start = [self.space.default]
        if self.sampler_name == "grid":
            start += [c for c in self.space.configs if c != self.space.default]
        for config in start:
            if config not in known:
                self.study.enqueue_trial(encode(self.space, config), skip_if_exists=True)

    def run(self, evaluate: Callable[[KernelConfig], float], *, known: dict[KernelConfig, float],
            budget_trials: int | None, deadline: float | None,
            on_reuse: Callable[[KernelConfig, float], None] | None = None) -> SearchStats:
        """Propose until the budget, the deadline or the space runs out. `evaluate` measures and records
        a config and returns its objective (inf for a failure); `known` maps recorded configs to theirs."""
        rng = random.Random(self.seed)
        taken: set[KernelConfig] = set()  # claimed by another worker of this run
        counts = {"measured": 0, "reused": 0, "proposals": 0, "idle": 0}
        stopped = ["exhausted"]

        def stop(reason: str) -> None:
            stopped[0] = reason
            self.study.stop()
            raise optuna.TrialPruned()  # this proposal measured nothing

        def objective(trial: optuna.Trial) -> float:
            if deadline is not None and time.monotonic() >= deadline:
                stop("seconds")
            counts["proposals"] += 1
            config = _suggest(self.space, trial)
            trial.set_user_attr("measured", False)
            if config is not None:
                trial.set_user_attr("config", config.to_json())
            verdict = "skip" if config is None or config in known or config in taken else self._claim(
                trial, config, known, budget_trials)
            if verdict == "budget":
                stop("trials")
            if verdict == "taken":
                taken.add(config)
            if verdict == "claimed":
                value = evaluate(config)
                known[config] = value
                counts["measured"] += 1
                counts["idle"] = 0
                trial.set_user_attr("measured", True)
            else:
                value = known.get(config, math.inf) if config is not None else math.inf
                if config in known:
                    counts["reused"] += 1
                    if on_reuse is not None:
                        on_reuse(config, value)
                counts["idle"] += 1
            fresh = [c for c in self.space.configs if c not in known and c not in taken]
            if not fresh:
                self.study.stop()
            elif counts["idle"] >= MAX_IDLE_PROPOSALS:  # the sampler keeps proposing spent configs
                self.study.enqueue_trial(encode(self.space, rng.choice(fresh)))
                counts["idle"] = 0
            if not math.isfinite(value):
                raise optuna.TrialPruned()
            return value

        if any(c not in known and c not in taken for c in self.space.configs):
            self.study.optimize(objective)
        return SearchStats(counts["measured"], counts["reused"], counts["proposals"], stopped[0])

    def _claim(self, trial: optuna.Trial, config: KernelConfig, known: dict[KernelConfig, float],
               budget_trials: int | None) -> str:
        """"claimed" (this trial measures `config`), "taken" (another of this run's trials has it),
        "known" (the study holds its value, now in `known`) or "budget" (this run's budget is spent)."""
        wanted = config.to_json()
        with self.lock():
            claims = 0
            for other in self.study.get_trials(deepcopy=False):
                attrs = other.user_attrs
                mine = attrs.get("claim") == self.run_id
                claims += mine
                if attrs.get("config") != wanted or other.number == trial.number:
                    continue
                if other.state in (TrialState.COMPLETE, TrialState.PRUNED) and attrs.get("measured", True) \
                        and attrs.get("source") != "store":
                    known[config] = other.value if other.state == TrialState.COMPLETE else math.inf
                    return "known"
                if mine:
                    return "taken"
            if budget_trials is not None and claims >= budget_trials:
                return "budget"
            trial.set_user_attr("claim", self.run_id)
        return "claimed"
