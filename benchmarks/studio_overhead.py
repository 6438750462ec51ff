"""Where a studio clip's time goes: the library's ``Pipeline`` against a ``/generate`` round trip.

    python benchmarks/studio_overhead.py                       # 5 rounds, the studio's default model
    python benchmarks/studio_overhead.py --root /tmp/base      # another checkout (e.g. before a change)
    python benchmarks/studio_overhead.py --json out.json

Run it on an otherwise idle machine: everything shares the same cores.

Measured, interleaved round by round (the machine's noise hits every row alike):

* ``pipeline``: ``Pipeline(Settings(prompt, seed))`` of the studio's default model and settings,
  in this process (the library's time for the clip).
* ``handler``: the studio's ``generate`` handler drained in this process (no server): sampling,
  whatever it records, its previews, encoding. Its parts, timed on their own in the same rounds:
  ``sampling+recording`` (the pipeline with the Inspector the studio would attach; equal to
  ``pipeline`` when the studio records nothing during Generate), ``previews`` (every preview the
  handler yields, drawn and PNG-encoded as Gradio does), ``encoding`` (the clip's MP4 and GIF).
* ``round trip``: ``gradio_client`` ``/generate`` against ``python app.py`` started from the same
  checkout (a subprocess on a free port), files downloaded; ``serving`` = round trip - handler
  (Gradio's queue, output post-processing and caching, events, HTTP, the client's downloads).
* ``inspect``: after a round trip, the Inspect tab's first full render of that clip
  (``Studio.render_all``, in this process on the same settings): what opening the tab costs.

The CPU capability, matmul GFLOP/s in fp32 and bf16 and the precision used go with the table.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROMPT = "a red circle moving right"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def matmul_gflops(dtype_name: str, n: int = 1024, reps: int = 10) -> float:
    import torch
    dt = getattr(torch, dtype_name)
    a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def start_app(root: Path, port: int, timeout: float = 180.0) -> subprocess.Popen:
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(root))
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=root, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"app.py exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("app.py did not serve its page in time")


def preview_cost(views, video, yields: int, max_frames: int) -> float:
    """Seconds to draw and PNG-encode ``yields`` previews as the handler yields them."""
    from PIL import Image
    t0 = time.perf_counter()
    for _ in range(yields):
        Image.fromarray(views.preview_grid(video, max_frames)).save(io.BytesIO(), "png")
    return time.perf_counter() - t0


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(Path(__file__).resolve().parent.parent),
                   help="the checkout to measure (its demo/ and stunet/ are imported)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--choice", default=None, help="the studio's model choice to time (default: the page's default)")
    p.add_argument("--json", help="write the measurements here")
    args = p.parse_args(argv)
    root = Path(args.root).resolve()
    sys.path.insert(0, str(root))
    os.chdir(root)

    import torch
    from gradio_client import Client
    from demo import figures as views
    from demo import limits as L
    from demo import models
    from demo.studio import Studio
    from stunet.checkpoint import default_model_dir
    from stunet.pipeline import Settings
    try:                                     # the module was renamed once
        from stunet.inspection import Inspector
    except ImportError:
        from stunet.inspection import Inspector

    choice = models.available(default_model_dir(), default=args.choice or L.DEFAULT_MODEL)[0]
    if args.choice and choice.key != args.choice:
        raise SystemExit(f"model choice {args.choice!r} is not offered here")
    pipe = models.load(choice.directory)
    studio = Studio(pipe, choices=[choice])
    api_kw = {"model": choice.key} if args.choice else {}
    d = choice.defaults
    settings = dict(steps=d.steps, guidance=d.guidance, sampler=d.sampler)
    records_inspector = getattr(Studio, "RECORDS_DURING_GENERATE", True)

    port = free_port()
    say("starting app.py")
    proc = start_app(root, port)
    say("app serving; warming")
    rows: dict[str, list[float]] = {k: [] for k in ("pipeline", "handler", "sampling+recording", "previews",
                                                     "encoding", "round trip", "done in", "inspect")}
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=tempfile.mkdtemp())
        client.predict(PROMPT, 999, d.steps, d.guidance, 32, api_name="/generate", **api_kw)   # warm the server
        studio.generate(PROMPT, 999, d.steps, d.guidance, 32, d.sampler).__next__()     # and this process
        for r in range(args.rounds):
            say(f"round {r + 1}/{args.rounds}")
            seed = r
            t0 = time.perf_counter()
            out = client.predict(PROMPT, seed, d.steps, d.guidance, 32, api_name="/generate", **api_kw)
            rows["round trip"].append(time.perf_counter() - t0)
            status = out[-1] if isinstance(out[-1], str) else ""
            if "in " in status:
                try:
                    rows["done in"].append(float(status.split("in ", 1)[1].split(" s", 1)[0]))
                except ValueError:
                    pass

            t0 = time.perf_counter()
            gen = pipe(Settings(PROMPT, seed=seed, frames=32, **settings))
            rows["pipeline"].append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            yields, rec = 0, None
            for item in studio.generate(PROMPT, seed, d.steps, d.guidance, 32, d.sampler):
                yields += 1
                rec = item[-1]
            rows["handler"].append(time.perf_counter() - t0)

            if records_inspector:
                t0 = time.perf_counter()
                with Inspector(pipe.model, x0_steps=studio._x0_steps(gen.settings),
                               feature_steps=studio._feature_steps(d.steps), max_bytes=L.RECORD_MAX_BYTES) as ins:
                    pipe(Settings(PROMPT, seed=seed, frames=32, **settings), inspector=ins)
                rows["sampling+recording"].append(time.perf_counter() - t0)
            else:
                rows["sampling+recording"].append(rows["pipeline"][-1])
            rows["previews"].append(preview_cost(views, gen.video, yields, L.PREVIEW_MAX_FRAMES))
            from stunet.video import write_video
            t0 = time.perf_counter()
            tmp = Path(tempfile.mkdtemp())
            write_video(tmp / "a.mp4", gen.video, fps=L.DEFAULT_FPS, scale=studio.video_scale)
            if not getattr(Studio, "GIF_ON_REQUEST", False):
                write_video(tmp / "a.gif", gen.video, fps=L.DEFAULT_FPS, scale=studio.gif_scale)
            rows["encoding"].append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            studio.render_all(rec)
            rows["inspect"].append(time.perf_counter() - t0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    med = {k: statistics.median(v) for k, v in rows.items() if v}
    med["serving"] = med["round trip"] - med["handler"]
    info = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads(),
            "fp32_gflops": round(matmul_gflops("float32"), 1), "bf16_gflops": round(matmul_gflops("bfloat16"), 1),
            "precision": pipe.precision.name, "model": choice.key, "settings": settings, "rounds": args.rounds,
            "load_average": os.getloadavg()[0], "root": str(root)}
    print(f"# studio overhead · {info['cpu_capability']} · {info['threads']} threads · fp32 "
          f"{info['fp32_gflops']} / bf16 {info['bf16_gflops']} GFLOP/s · {info['precision']} · model "
          f"{choice.key} ({d.steps} {d.sampler} steps, guidance {d.guidance:g}) · medians of {args.rounds}")
    print("| part | seconds | x pipeline |\n|---|---:|---:|")
    for k in ("pipeline", "sampling+recording", "previews", "encoding", "handler", "serving", "round trip",
              "done in", "inspect"):
        if k in med:
            print(f"| {k} | {med[k]:.3f} | {med[k] / med['pipeline']:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "rows": rows, "medians": med}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
