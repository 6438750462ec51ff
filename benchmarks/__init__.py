"""Benchmarks of the STUNet: a tool of the source checkout, not part of the installed ``stunet``
package (as diffusers keeps ``benchmarks/`` beside its package). Run from the checkout root:

    python -m benchmarks.run --out bench.md --json bench.json     # full run (minutes)
    python -m benchmarks.run --quick --out /tmp/quick.md          # smoke run
    python benchmarks/run.py --help                               # the same, as a script
    stunet bench ...                                              # the same, from a checkout

Modules, by job:

* ``measure``   - wall time (round-robin), peak memory, FLOP counting, the matmul reference
* ``baselines`` - the VDM-style twin and diffusers' ``UNet3DConditionModel`` matched in parameters
* ``levers``    - speed levers as data (``LEVERS``: channels_last, torch.compile, ...)
* ``cells``     - what one measurement runs, and the worker-process protocol
* ``results``   - the options of a run, what it measured, and the numbers derived from it
* ``report``    - targets (met / NOT met) and the markdown report
* ``run``       - orchestration and the command line
"""
from pathlib import Path

# The checkout root: worker processes run here, with it on PYTHONPATH (``benchmarks`` and ``stunet``).
ROOT = Path(__file__).resolve().parent.parent
