"""The tuning loop: for each op plan x shape bucket x dtype, search, record every trial, report.

Every trial is recorded in the slagen store the moment it completes (a crash loses nothing), and the
store moves `best` to it when it is ok and faster. Recorded trials for the same key are reused: their
configs are validated against the plan and the device's pruned space (a database is data from
elsewhere) and never measured again. `workers=N` runs N processes on one Optuna study per key, kept
in the store's own database (see `search.open_storage`); slagen's tables stay the source of truth.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import multiprocessing
import queue as queue_module
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..identity import TuningKey, stable_hash
from ..codegen import ConfigError, KernelConfig, KernelPlan, lower, template_hash
from ..spec import ProblemShape, VariantSpec, bucket_of
from .events import Listener, Progress, TuneEvent
from .fingerprint import DeviceFingerprint
from .gpu_lock import file_lock
from .measure import MeasureFn, Measurement, TrialContext, measure_op
from .space import Estimator, SearchSpace, build_space

DEFAULT_TRIAL_TIME_LIMIT_S = 600.0


class TuningError(RuntimeError):
    """The run could not go on (a worker died, a device fault); trials recorded so far are kept."""


@dataclass(frozen=True)
class SearchReport:
    """One search: an op of the variant on one shape bucket and dtype."""

    op: str
    plan_name: str
    shape_bucket: str
    shape: str
    dtype: str
    best_config: dict[str, Any] | None
    best_ms: float | None
    trials_by_status: dict[str, int]  # measured in this run
    reused: int  # proposals answered from recorded trials
    rejected: int  # recorded configs refused by validation
    space_size: int
    pruned: int  # configs dropped analytically for this device
    stopped: str


@dataclass(frozen=True)
class TuneReport:
    spec_name: str
    device_key: str
    sampler: str
    seed: int
    workers: int
    elapsed_s: float
    searches: tuple[SearchReport, ...]

    @property
    def trials_by_status(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for search in self.searches:
            for status, count in search.trials_by_status.items():
                total[status] = total.get(status, 0) + count
        return total

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec_name, "device": self.device_key, "sampler": self.sampler, "seed": self.seed,
            "workers": self.workers, "elapsed_s": self.elapsed_s, "trials_by_status": self.trials_by_status,
            "searches": [search.__dict__ for search in self.searches],
        }


@dataclass(frozen=True)
class Job:
    """What one search needs, picklable for spawned workers."""

    index: int
    plan: KernelPlan
    shape: ProblemShape
    dtype: str
    study_name: str

    @property
    def bucket(self) -> str:
        return bucket_of(self.shape)


@dataclass(frozen=True)
class RunSettings:
    spec: VariantSpec
    device: DeviceFingerprint
    sampler: str
    seed: int
    budget_trials: int | None
    deadline: float | None  # time.monotonic() at which the whole run stops
    measure: MeasureFn
    trial_time_limit_s: float
    estimator: Estimator | None = None
    run_id: str = "local"  # names this run's claims in the shared studies
    optuna_url: str | None = None


def _kernel_ref(spec: VariantSpec, plan: KernelPlan):
    from ..db import KernelRef

    return KernelRef(spec.spec_hash, plan.name, template_hash(plan.template))


def tuning_key(spec: VariantSpec, plan: KernelPlan, device: DeviceFingerprint, dtype: str, bucket: str) -> TuningKey:
    return TuningKey(spec.spec_hash, plan.name, template_hash(plan.template), device, dtype, bucket)


def study_name(spec: VariantSpec, plan: KernelPlan, device: DeviceFingerprint, dtype: str, bucket: str) -> str:
    """The Optuna study of one search: the tuning key's hash and the axes (which shape the parameters)."""
    key = tuning_key(spec, plan, device, dtype, bucket).stable_hash()[:32]
    axes = [[a.name, list(a.choices)] for a in plan.axes]
    return f"slagen:{key}:{plan.op}:{stable_hash(axes, length=8)}"


def make_jobs(spec: VariantSpec, plans: Mapping[str, KernelPlan], shapes: Iterable[ProblemShape],
              device: DeviceFingerprint, dtypes: Iterable[str]) -> list[Job]:
    """One job per op x bucket x dtype; of several shapes in one bucket the first is timed."""
    by_bucket: dict[str, ProblemShape] = {}
    for shape in shapes:
        by_bucket.setdefault(bucket_of(shape), shape)
    jobs = []
    for op, plan in plans.items():
        for bucket, shape in by_bucket.items():
            for dtype in dtypes:
                jobs.append(Job(len(jobs), plan, shape, dtype, study_name(spec, plan, device, dtype, bucket)))
    return jobs


def recorded_results(store, settings: RunSettings, job: Job, space: SearchSpace,
                     emit=None) -> dict[KernelConfig, float]:
    """Objectives of the configs already recorded for this key; configs that fail validation are refused."""
    known: dict[KernelConfig, float] = {}
    trials = store.trials(kernel=_kernel_ref(settings.spec, job.plan), device=settings.device,
                          shape_bucket=job.bucket, dtype=job.dtype)
    for trial in trials:
        try:
            config = space.validate(trial.config)
        except ConfigError as err:
            if emit is not None:
                emit(TuneEvent("rejected", job.index, job.plan.op, job.bucket, job.dtype, message=str(err)))
            continue
        value = trial.median_ms if trial.status == "ok" and trial.median_ms is not None else math.inf
        known[config] = min(value, known.get(config, math.inf))
    return known


def _record(store, settings: RunSettings, job: Job, config: KernelConfig, m: Measurement) -> None:
    store.record_trial(
        _kernel_ref(settings.spec, job.plan), spec=json.loads(settings.spec.canonical_json()),
        device=settings.device, shape_bucket=job.bucket, dtype=job.dtype, config=config.as_dict(),
        status=m.status, median_ms=m.median_ms, p20_ms=m.p20_ms, p80_ms=m.p80_ms, n_repeats=m.n_repeats,
        max_error=m.max_error, sampler=settings.sampler, seed=settings.seed,
    )


def run_job(store, settings: RunSettings, job: Job, search, space: SearchSpace, emit, remaining_jobs: int) -> None:
    """Search one key in this process: measure, record at once, report each trial."""
    deadline = None
    if settings.deadline is not None:
        now = time.monotonic()
        deadline = now + max(0.0, settings.deadline - now) / max(1, remaining_jobs)
    head = dict(search=job.index, op=job.plan.op, shape_bucket=job.bucket, dtype=job.dtype)
    known = recorded_results(store, settings, job, space)

    def evaluate(config: KernelConfig) -> float:
        ctx = TrialContext(settings.spec, job.plan, config, job.shape, job.dtype, settings.device,
                           time_limit_s=settings.trial_time_limit_s, seed=settings.seed)
        m = settings.measure(ctx)
        _record(store, settings, job, config, m)
        emit(TuneEvent("trial", **head, config=config.as_dict(), status=m.status, median_ms=m.median_ms,
                       message=m.message))
        return m.objective

    def on_reuse(config: KernelConfig, value: float) -> None:
        finite = math.isfinite(value)
        emit(TuneEvent("reused", **head, config=config.as_dict(), status="ok" if finite else "failed",
                       median_ms=value if finite else None))

    stats = search.run(evaluate, known=known, budget_trials=settings.budget_trials, deadline=deadline,
                       on_reuse=on_reuse)
    emit(TuneEvent("search_done", **head, stats=stats.__dict__))


def _open_search(settings: RunSettings, job: Job, space: SearchSpace, storage, seed: int):
    from .search import Search

    lock = contextlib.nullcontext if settings.optuna_url is None else functools.partial(
        file_lock, f"study-{job.study_name}")  # the run's workers read and claim one at a time
    return Search(space, study_name=job.study_name, storage=storage, sampler=settings.sampler, seed=seed,
                  run_id=settings.run_id, lock=lock)


def _spaces(settings: RunSettings, jobs: list[Job]) -> list[SearchSpace]:
    return [build_space(job.plan, settings.device, job.dtype, estimator=settings.estimator) for job in jobs]


def _worker_main(settings: RunSettings, store_url: str, jobs: list[Job], worker: int, events) -> None:
    """A spawned worker: every job in order, on the shared studies; events go back through `events`."""
    try:
        from ..db import TuningStore
        from .search import open_storage

        spaces = _spaces(settings, jobs)
        storage = open_storage(settings.optuna_url)
        with TuningStore(store_url) as store:
            for i, (job, space) in enumerate(zip(jobs, spaces)):
                search = _open_search(settings, job, space, storage, settings.seed + worker)
                run_job(store, settings, job, search, space, events.put, len(jobs) - i)
    except BaseException:  # noqa: BLE001 - reported to the owner, which raises
        events.put(TuneEvent("done", message=f"worker {worker} failed:\n{traceback.format_exc()}",
                             status="error"))
        raise


def _run_workers(settings: RunSettings, store_url: str, jobs: list[Job], workers: int, progress: Progress) -> None:
    context = multiprocessing.get_context("spawn")
    events = context.Queue()
    procs = [context.Process(target=_worker_main, args=(settings, store_url, jobs, w, events), daemon=True)
             for w in range(workers)]
    for proc in procs:
        proc.start()
    errors: list[str] = []
    while True:
        try:
            event = events.get(timeout=0.1)
        except queue_module.Empty:
            if not any(proc.is_alive() for proc in procs):
                break
            continue
        if event.status == "error":
            errors.append(event.message)
        else:
            progress.apply(event)
    for proc in procs:
        proc.join()
    failed = [w for w, proc in enumerate(procs) if proc.exitcode != 0]
    if errors or failed:
        raise TuningError(errors[0] if errors else f"tuning workers {failed} exited abnormally")


def _best(store, settings: RunSettings, job: Job, space: SearchSpace) -> tuple[KernelConfig | None, float | None]:
    """The store's best when it is a valid config of this space; else the fastest valid ok trial."""
    stored = store.best_for(tuning_key(settings.spec, job.plan, settings.device, job.dtype, job.bucket))
    if stored is not None:
        try:
            return space.validate(stored.config), stored.median_ms
        except ConfigError:
            pass
    known = recorded_results(store, settings, job, space)
    finite = {c: v for c, v in known.items() if math.isfinite(v)}
    if not finite:
        return None, None
    best = min(finite, key=lambda c: (finite[c], c.to_json()))
    return best, finite[best]


def _report(store, settings: RunSettings, jobs: list[Job], spaces: list[SearchSpace], progress: Progress,
            workers: int, elapsed: float) -> TuneReport:
    searches = []
    for job, space in zip(jobs, spaces):
        best, best_ms = _best(store, settings, job, space)
        stats = progress.stats[job.index]
        searches.append(SearchReport(
            op=job.plan.op, plan_name=job.plan.name, shape_bucket=job.bucket, shape=str(job.shape), dtype=job.dtype,
            best_config=best.as_dict() if best else None, best_ms=best_ms,
            trials_by_status={s: n for s, n in sorted(progress.by_status[job.index].items())},
            reused=progress.reused[job.index], rejected=progress.rejected[job.index], space_size=len(space),
            pruned=len(space.pruned), stopped=",".join(sorted({s["stopped"] for s in stats})) or "none",
        ))
    return TuneReport(settings.spec.name, settings.device.device_key, settings.sampler, settings.seed, workers,
                      elapsed, tuple(searches))


def _planned(space: SearchSpace, budget_trials: int | None, known: int) -> int | None:
    left = max(0, len(space) - known)
    return left if budget_trials is None else min(budget_trials, left)


def tune(spec: VariantSpec, shapes: Iterable[ProblemShape], *, store, device: DeviceFingerprint,
         budget_trials: int | None = None, budget_seconds: float | None = None, sampler: str = "tpe",
         seed: int = 0, listener: Listener | None = None, measure: MeasureFn | None = None, workers: int = 1,
         plans: Mapping[str, KernelPlan] | None = None, dtypes: Iterable[str] | None = None,
         estimator: Estimator | None = None, trial_time_limit_s: float = DEFAULT_TRIAL_TIME_LIMIT_S) -> TuneReport:
    """Tune every op of `spec` (or the given `plans`) for each shape bucket and dtype on `device`.

    `budget_trials` bounds the configs measured per search; `budget_seconds` the whole run, shared among
    the searches still to go. Without either, each search runs until its pruned space is exhausted.
    """
    from .search import SAMPLERS, SearchError, open_storage

    if sampler not in SAMPLERS:
        raise SearchError(f"sampler: expected one of {SAMPLERS}, got {sampler!r}")
    if budget_trials is not None and (isinstance(budget_trials, bool) or budget_trials < 1):
        raise SearchError(f"budget_trials: expected an integer >= 1, got {budget_trials!r}")
    if budget_seconds is not None and not budget_seconds > 0:
        raise SearchError(f"budget_seconds: expected a number > 0, got {budget_seconds!r}")
    if workers < 1:
        raise SearchError(f"workers: expected an integer >= 1, got {workers!r}")
    started = time.monotonic()
    plans = dict(plans) if plans is not None else lower(spec)
    jobs = make_jobs(spec, plans, list(shapes), device, tuple(dtypes or spec.dtypes))
    shared = workers > 1
    store_url = getattr(store, "url", None)
    if shared and (not store_url or ":memory:" in store_url):
        raise SearchError("workers: more than one worker needs a database file or server, not an in-memory store")
    settings = RunSettings(
        spec=spec, device=device, sampler=sampler, seed=seed, budget_trials=budget_trials,
        deadline=None if budget_seconds is None else started + budget_seconds, measure=measure or measure_op,
        trial_time_limit_s=trial_time_limit_s, estimator=estimator,
        run_id=uuid.uuid4().hex[:12], optuna_url=store_url if shared else None,
    )
    spaces = _spaces(settings, jobs)
    progress = Progress(len(jobs), [], listener)  # totals fixed below, once recorded trials are counted
    storage = open_storage(settings.optuna_url)
    searches, planned = [], []
    for job, space in zip(jobs, spaces):
        known = recorded_results(store, settings, job, space, emit=progress.apply)
        search = _open_search(settings, job, space, storage, seed)
        search.prepare(known)
        searches.append(search)
        planned.append(_planned(space, budget_trials, len(known)))
    progress.total = None if budget_trials is None and budget_seconds is not None else sum(p or 0 for p in planned)
    progress.apply(TuneEvent("start", message=f"{len(jobs)} searches on {device.device_key}"))
    if shared:
        _run_workers(settings, store_url, jobs, workers, progress)
    else:
        for i, (job, space, search) in enumerate(zip(jobs, spaces, searches)):
            progress.apply(TuneEvent("search_start", job.index, job.plan.op, job.bucket, job.dtype))
            run_job(store, settings, job, search, space, progress.apply, len(jobs) - i)
    report = _report(store, settings, jobs, spaces, progress, workers, time.monotonic() - started)
    progress.apply(TuneEvent("done", message=json.dumps(report.trials_by_status)))
    return report


__all__ = ["Job", "SearchReport", "TuneReport", "TuningError", "make_jobs", "study_name", "tune"]
