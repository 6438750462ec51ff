"""Start-up time of the studio against the bare imports, measured the same way, interleaved.

    python scripts/measure_startup.py                 # 5 rounds: bare import, then app.py, alternately
    python scripts/measure_startup.py --runs 8 --json

* ``app``: ``python app.py`` on a free port (GRADIO_SERVER_PORT), timed from the process start
  until ``GET /`` answers HTTP 200.
* ``import``: ``python -c "import torch, gradio"``, timed from the process start until it prints a
  line after the imports (the interpreter's exit, which tears torch down, is not counted).

Both run with the same interpreter and environment (``PYTHONDONTWRITEBYTECODE`` is passed through
as it is, so a machine that writes no bytecode pays for compiling in both). The target
is app - import <= 1.5 s by the median. ``STUNET_MODEL`` picks the checkpoint as for the app.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_import(modules: str = "torch, gradio") -> float:
    """Seconds until the imports are done (a line printed after them), not counting interpreter exit."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", f"import {modules}; print('imported', flush=True)"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    seconds = time.perf_counter() - t0
    proc.stdout.close()
    if proc.wait() != 0 or line.strip() != "imported":
        raise RuntimeError(f"import {modules} failed")
    return seconds


def time_app(timeout: float = 120.0) -> float:
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_ANALYTICS_ENABLED="False")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {proc.returncode} before serving its page")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                    if r.status == 200:
                        return time.perf_counter() - t0
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"app.py did not serve its page within {timeout:.0f} s")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="rounds (each: one bare import, one app start)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    time_import()                          # warm the file cache once, counted in neither
    imports, apps = [], []
    for i in range(args.runs):
        imports.append(time_import())
        apps.append(time_app())
        print(f"round {i + 1}: import torch, gradio {imports[-1]:.2f} s · app.py page served {apps[-1]:.2f} s "
              f"· difference {apps[-1] - imports[-1]:+.2f} s", file=sys.stderr)
    diffs = [a - b for a, b in zip(apps, imports)]
    out = {"python": sys.version.split()[0], "runs": args.runs,
           "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
           "import_s": imports, "app_s": apps,
           "import_median_s": statistics.median(imports), "app_median_s": statistics.median(apps),
           "difference_median_s": statistics.median(diffs)}
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        print(f"median over {args.runs} interleaved rounds: import torch, gradio {out['import_median_s']:.2f} s, "
              f"app.py page served {out['app_median_s']:.2f} s, difference {out['difference_median_s']:+.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
