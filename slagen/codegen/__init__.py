"""Codegen: spec -> kernel plans -> rendered Triton source. No torch here."""

from .lower import lower, plan_for
from .plan import Axis, ConfigError, KernelConfig, KernelPlan, Rule, UnsupportedSpec
from .render import describe, render, source_hash, template_hash

__all__ = [
    "Axis", "ConfigError", "KernelConfig", "KernelPlan", "Rule", "UnsupportedSpec", "describe", "lower", "plan_for",
    "render", "source_hash", "template_hash",
]
