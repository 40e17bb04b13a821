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

Several workers share one study through an RDB storage. Two Optuna-storage facts make the
coordination exact: trial numbers are handed out atomically, and a study name is unique. The trial
budget is a ledger study whose trial numbers are the measurement slots; a config is claimed by creating
a study named after it. Both are per run and deleted at its end.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
import warnings
from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from ..codegen import Axis, ConfigError, KernelConfig
from .space import SearchSpace

SAMPLERS = ("tpe", "cmaes", "random", "grid")
SQLITE_TIMEOUT_S = 60.0
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


def _sqlite_immediate(engine) -> None:
    """Optuna's writes start as reads; a lock upgrade in SQLite fails at once whatever the busy timeout.
    BEGIN IMMEDIATE takes the write lock up front, so concurrent workers wait instead of failing."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        dbapi_connection.execute(f"PRAGMA busy_timeout = {int(SQLITE_TIMEOUT_S * 1000)}")

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the hooks would skip them


def open_storage(store_url: str | None) -> optuna.storages.BaseStorage:
    """In-memory for a single process without a URL, else Optuna's RDB storage in the slagen store's own
    database (slagen's tables are prefixed `slagen_`, so Optuna's `trials` and `alembic_version` fit beside
    them). slagen's tables stay the source of truth; Optuna's only coordinate the workers."""
    if store_url is None:
        return optuna.storages.InMemoryStorage()
    from sqlalchemy.engine import make_url

    url = store_url
    backend = make_url(url).get_backend_name()
    kwargs: dict = {}
    if backend == "sqlite":
        kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
    elif backend == "postgresql":
        kwargs = {"pool_pre_ping": True}
    storage = _retrying(lambda: optuna.storages.RDBStorage(url, engine_kwargs=kwargs))
    if backend == "sqlite":
        _sqlite_immediate(storage.engine)
    return storage


def _retrying(action: Callable, attempts: int = 8):
    """Run a storage action, retrying a transient lock or serialisation failure with backoff."""
    from sqlalchemy.exc import OperationalError

    for attempt in range(attempts):
        try:
            return action()
        except OperationalError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2 ** attempt)
    raise AssertionError("unreachable")


# --- coordination between workers -----------------------------------------------------------------


class _LocalLedger:
    def __init__(self) -> None:
        self.taken = 0
        self.claimed: set[KernelConfig] = set()

    def take_slot(self) -> int:
        self.taken += 1
        return self.taken - 1

    def claim(self, config: KernelConfig) -> bool:
        if config in self.claimed:
            return False
        self.claimed.add(config)
        return True

    def cleanup(self) -> None:
        pass


class _SharedLedger:
    """Slots and claims in the shared storage; `prefix` names this run's bookkeeping studies."""

    def __init__(self, storage: optuna.storages.BaseStorage, prefix: str) -> None:
        self.storage, self.prefix = storage, prefix
        self.slots = _retrying(lambda: optuna.create_study(storage=storage, study_name=f"{prefix}:slots",
                                                           load_if_exists=True))

    def take_slot(self) -> int:
        trial = _retrying(self.slots.ask)
        _retrying(lambda: self.slots.tell(trial, 0.0))
        return trial.number

    def claim(self, config: KernelConfig) -> bool:
        name = f"{self.prefix}:claim:{hashlib.sha256(config.to_json().encode()).hexdigest()[:24]}"
        try:
            _retrying(lambda: optuna.create_study(storage=self.storage, study_name=name))
        except optuna.exceptions.DuplicatedStudyError:
            return False
        return True

    def cleanup(self) -> None:
        for name in optuna.get_all_study_names(self.storage):
            if name.startswith(self.prefix + ":"):
                try:
                    optuna.delete_study(study_name=name, storage=self.storage)
                except KeyError:  # another worker deleted it first
                    pass


# --- the search -------------------------------------------------------------------------------------


class Search:
    """One study for one (op, device, bucket, dtype) key.

    `prepare` (once, by the process that owns the run) seeds the study with recorded results and
    enqueues the start points; `run` (in each worker) proposes, measures through `evaluate`, and tells.
    """

    def __init__(self, space: SearchSpace, *, study_name: str, storage: optuna.storages.BaseStorage,
                 sampler: str = "tpe", seed: int = 0, run_id: str | None = None) -> None:
        if sampler not in SAMPLERS:
            raise SearchError(f"sampler: expected one of {SAMPLERS}, got {sampler!r}")
        self.space, self.sampler_name, self.seed = space, sampler, seed
        self.study = _retrying(lambda: optuna.create_study(
            storage=storage, study_name=study_name, sampler=make_sampler(sampler, space, seed),
            direction="minimize", load_if_exists=True))
        self.ledger = _LocalLedger() if run_id is None else _SharedLedger(storage, f"{study_name}:{run_id}")

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
        measured = reused = proposals = idle = 0
        while True:
            if deadline is not None and time.monotonic() >= deadline:
                return SearchStats(measured, reused, proposals, "seconds")
            fresh = [c for c in self.space.configs if c not in known and c not in taken]
            if not fresh:
                return SearchStats(measured, reused, proposals, "exhausted")
            if idle >= MAX_IDLE_PROPOSALS:  # the sampler keeps proposing spent configs: force a new one
                if self._learn_from_others(known):
                    idle = 0
                    continue
                self.study.enqueue_trial(encode(self.space, rng.choice(fresh)))
                idle = 0
            trial = _retrying(self.study.ask)
            proposals += 1
            config = _suggest(self.space, trial)
            if config is not None and config not in known and config not in taken and not self.ledger.claim(config):
                taken.add(config)
            if config is None or config in known or config in taken:
                value = known.get(config, math.inf) if config is not None else math.inf
                if config in known:
                    reused += 1
                    if on_reuse is not None:
                        on_reuse(config, value)
                self._tell(trial, config, value, measured=False)
                idle += 1
                continue
            if budget_trials is not None and self.ledger.take_slot() >= budget_trials:
                self._tell(trial, config, math.inf, measured=False)
                return SearchStats(measured, reused, proposals, "trials")
            value = evaluate(config)
            known[config] = value
            measured += 1
            idle = 0
            self._tell(trial, config, value, measured=True)

    def _learn_from_others(self, known: dict[KernelConfig, float]) -> bool:
        """Add what other workers measured (finished trials of the shared study) to `known`; True if any."""
        if isinstance(self.ledger, _LocalLedger):
            return False
        added = False
        states = (TrialState.COMPLETE, TrialState.PRUNED)
        for trial in _retrying(lambda: self.study.get_trials(deepcopy=False, states=states)):
            if not trial.user_attrs.get("measured"):
                continue
            try:  # the shared storage is data too: validate before use
                config = self.space.plan.validate_config(json.loads(trial.user_attrs["config"]))
            except (ConfigError, ValueError, TypeError, KeyError):
                continue
            if config in self.space and config not in known:
                known[config] = trial.value if trial.state == TrialState.COMPLETE else math.inf
                added = True
        return added

    def _tell(self, trial: optuna.Trial, config: KernelConfig | None, value: float, *, measured: bool) -> None:
        if config is not None:
            trial.set_user_attr("config", config.to_json())
        trial.set_user_attr("measured", measured)
        if math.isfinite(value):
            _retrying(lambda: self.study.tell(trial, value))
        else:
            _retrying(lambda: self.study.tell(trial, state=TrialState.PRUNED))

    def cleanup(self) -> None:
        self.ledger.cleanup()
