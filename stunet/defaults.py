"""Sampling and run-time defaults, in one place (imports nothing heavy: no torch).

Every function default, argparse default and studio choice list reads these names, so a
changed default is changed here and nowhere else. Model *architecture* defaults live in
``config.STUNetConfig``; these are settings of a sampling call or of a process.
"""
from __future__ import annotations

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

# Compute precision: "auto" measures bf16 against fp32 once per process and takes the faster
# (``precision.resolve``); "fp32" / "bf16" force one. $STUNET_PRECISION sets it for the studio.
PRECISIONS = ("auto", "fp32", "bf16")
PRECISION = "auto"
PRECISION_ENV = "STUNET_PRECISION"
