"""Autotuning: device fingerprints, pruned search spaces, measurement, search strategies, the tuner loop.

Optuna is imported only by `search` (and so only when a search runs); importing this package is light.
"""

from .events import EVENT_KINDS, Listener, TuneEvent
from .fingerprint import A100_SXM, FIXTURES, H100_SXM, H200, DeviceFingerprint, detect
from .measure import FAILURES, STATUSES, DeviceFault, Measurement, MeasureSettings, TrialContext, measure_op
from .space import ResourceEstimate, SearchSpace, build_space, estimate_resources
from .synthetic import SyntheticCost
from .tuner import SearchReport, TuneReport, TuningError, tune

__all__ = [
    "A100_SXM", "EVENT_KINDS", "FAILURES", "FIXTURES", "H100_SXM", "H200", "DeviceFault", "DeviceFingerprint",
    "Listener", "MeasureSettings", "Measurement", "ResourceEstimate", "STATUSES", "SearchReport", "SearchSpace",
    "SyntheticCost", "TrialContext", "TuneEvent", "TuneReport", "TuningError", "build_space", "detect",
    "estimate_resources", "measure_op", "tune",
]
