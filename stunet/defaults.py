"""Sampling and run-time defaults, in one place (imports nothing heavy: no torch).

Every function default, argparse default and studio choice list reads these names, so a
changed default is changed here and nowhere else. Model *architecture* defaults live in
``config.STUNetConfig``; these are settings of a sampling call or of a process.
"""
from __future__ import annotations

from dataclasses import dataclass

# Solvers (diffusers' schedulers, see ``diffusion.make_scheduler``), by the name the CLI, the
# studio and the API accept; the first is the default.
SAMPLERS = ("dpm++", "ddim", "dpm++3m", "unipc")
SAMPLER = SAMPLERS[0]
SAMPLER_LABELS = {"dpm++": "DPM-Solver++ (2M)", "ddim": "DDIM", "dpm++3m": "DPM-Solver++ (3M)",
                  "unipc": "UniPC (2nd order, bh2)"}

# Denoising steps of a default clip (studio, CLI, eval, ``Settings``).
STEPS = 25

# Classifier-free guidance scale (against the learned empty prompt).
GUIDANCE = 3.0

# Diffusion timesteps (inclusive) where guidance applies; None: every step (Kynkäänniemi et al.
# 2024 guide only in a limited interval; an unguided step costs one network row instead of two).
GUIDANCE_INTERVAL = None
# The guidance scale of the steps outside that interval (1: unguided, the conditional prediction alone).
GUIDANCE_ELSEWHERE = 1.0

# Compute precision: "auto" measures bf16 against fp32 once per process and takes the faster
# (``precision.resolve``); "fp32" / "bf16" force one. $STUNET_PRECISION sets it for the studio.
PRECISIONS = ("auto", "fp32", "bf16")
PRECISION = "auto"
PRECISION_ENV = "STUNET_PRECISION"


@dataclass(frozen=True)
class SamplingDefaults:
    """A checkpoint's own sampling defaults (its ``sampling.json``; absent: the values above).

    A distilled few-step model is sampled with the solver, step count and guidance it was
    distilled for; ``Pipeline`` and the studio take them from here.
    """
    steps: int = STEPS
    guidance: float = GUIDANCE
    sampler: str = SAMPLER
    guidance_interval: tuple[int, int] | None = GUIDANCE_INTERVAL
    guidance_elsewhere: float = GUIDANCE_ELSEWHERE

    def __post_init__(self):
        if not (isinstance(self.steps, int) and 1 <= self.steps <= 1000):
            raise ValueError(f"steps must be an integer in [1, 1000], got {self.steps!r}")
        if not (isinstance(self.guidance, (int, float)) and 0.0 <= self.guidance <= 30.0):
            raise ValueError(f"guidance must be a number in [0, 30], got {self.guidance!r}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
        if self.guidance_interval is not None:
            object.__setattr__(self, "guidance_interval", parse_interval(self.guidance_interval))
        object.__setattr__(self, "guidance_elsewhere", parse_elsewhere(self.guidance_elsewhere, self.guidance_interval))

    @classmethod
    def from_dict(cls, d: dict) -> "SamplingDefaults":
        unknown = set(d) - {"steps", "guidance", "sampler", "guidance_interval", "guidance_elsewhere"}
        if unknown:
            raise ValueError(f"unknown sampling keys {sorted(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict:
        d = {"steps": self.steps, "guidance": self.guidance, "sampler": self.sampler}
        if self.guidance_interval is not None:
            d["guidance_interval"] = list(self.guidance_interval)
        if self.guidance_elsewhere != GUIDANCE_ELSEWHERE:
            d["guidance_elsewhere"] = self.guidance_elsewhere
        return d


def parse_interval(value) -> tuple[int, int] | None:
    """A guidance interval from ``"LO,HI"`` or a pair: ``(lo, hi)`` timesteps with 0 <= lo <= hi <= 999;
    ``"all"`` is (0, 999), every step; None / "" stay None (unset). Raises ValueError naming the value."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, str) and value.strip().lower() == "all":
        return 0, 999
    parts = value.split(",") if isinstance(value, str) else value
    try:
        lo, hi = (int(str(v).strip()) for v in parts)
    except (TypeError, ValueError):
        raise ValueError(f"guidance interval must be two timesteps LO,HI, got {value!r}") from None
    if not 0 <= lo <= hi <= 999:
        raise ValueError(f"guidance interval must have 0 <= LO <= HI <= 999, got {value!r}")
    return lo, hi


def parse_elsewhere(value, interval: tuple[int, int] | None) -> float:
    """The guidance scale outside the interval: a number in [0, 30]; other than 1 only with an interval set.
    Raises ValueError naming the value."""
    try:
        w = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"guidance outside the interval must be a number, got {value!r}") from None
    if not 0.0 <= w <= 30.0:
        raise ValueError(f"guidance outside the interval must be in [0, 30], got {value!r}")
    if w != 1.0 and interval is None:
        raise ValueError("a guidance scale outside the interval needs a guidance interval")
    return w
