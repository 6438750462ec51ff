"""Load test of the studio: many clients at once against a bounded queue, then recovery.

    python scripts/load_test.py                         # tiny random model, production limits
    python scripts/load_test.py --clients 24 --requests 4 --steps 4
    python scripts/load_test.py --model assets/stunet-shapes --clients 12 --steps 10

Launches the app in-process (``build_demo`` + ``launch_options``, as ``app.py``), starts
``--clients`` gradio_client users at once, each sending ``--requests`` /generate calls with
its own seeds, and prints one JSON line: calls that succeeded, got the "queue is full"
answer, or failed otherwise (must be none), latency percentiles, throughput, the server's
resident memory (start, peak, end), files left in Gradio's folder, and how long a normal
call takes once the burst is over. Every successful result is checked against the seed
and settings it asked for.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
PROMPTS = ["a red circle moving right", "a blue square spinning", "a green triangle bouncing",
           "a yellow circle moving left"]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def tiny_checkpoint(directory: str | Path) -> Path:
    """A randomly initialised tiny model saved as a checkpoint (what the tests use)."""
    import torch
    from stunet.checkpoint import save_pretrained
    from stunet.config import preset
    from stunet.model import STUNet
    from stunet.shapes.data import tokenizer_for
    torch.manual_seed(0)
    cfg = preset("tiny")
    model = STUNet(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return save_pretrained(model, tokenizer_for(cfg), directory)


def launch(model: str | Path, **build_kw):
    """(demo, url): the studio on ``model``, launched on a free local port with the app's launch options."""
    os.environ["STUNET_MODEL"] = str(model)
    from demo.app import build_demo, launch_options
    from stunet.pipeline import Pipeline
    d = build_demo(Pipeline.from_pretrained(model), warm=False, **build_kw)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _, url, _ = d.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                         **launch_options())
    return d, url


def files_in_cache() -> int:
    from gradio.utils import get_upload_folder
    return sum(1 for p in Path(get_upload_folder()).rglob("*") if p.is_file())


def run_load(url: str, clients: int = 16, requests: int = 3, steps: int = 4, frames: int = 8) -> dict:
    from gradio_client import Client
    rss = [rss_mb()]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.25):
            rss.append(rss_mb())

    threading.Thread(target=sample, daemon=True).start()
    lock = threading.Lock()
    out = {"ok": 0, "busy": 0, "errors": []}
    latencies: list[float] = []

    def user(i: int):
        c = Client(url, verbose=False, download_files=False)
        for r in range(requests):
            seed = 1000 * i + r
            prompt = PROMPTS[(i + r) % len(PROMPTS)]
            t0 = time.monotonic()
            try:
                res = c.predict(prompt, seed, steps, 3.0, frames, api_name="/generate")
            except Exception as e:   # noqa: BLE001 - classified below
                msg = str(e)
                with lock:
                    if "Queue is full" in msg or type(e).__name__ == "QueueError":
                        out["busy"] += 1
                    else:
                        out["errors"].append(f"{type(e).__name__}: {msg[:200]}")
                continue
            dt = time.monotonic() - t0
            s = res[3]
            with lock:
                if (s["seed"], s["prompt"], s["steps"], s["frames"]) != (seed, prompt, steps, frames):
                    out["errors"].append(f"wrong settings back: {s}")
                else:
                    out["ok"] += 1
                    latencies.append(dt)

    t0 = time.monotonic()
    with ThreadPoolExecutor(clients) as ex:
        list(ex.map(user, range(clients)))
    wall = time.monotonic() - t0
    stop.set()
    t1 = time.monotonic()
    c = Client(url, verbose=False, download_files=False)
    c.predict(PROMPTS[0], 1, 1, 3.0, frames, api_name="/generate")
    recovered = time.monotonic() - t1
    lat = sorted(latencies) or [float("nan")]
    pct = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 2)   # noqa: E731
    return {"clients": clients, "requests_per_client": requests, "steps": steps, "frames": frames,
            "calls": clients * requests, "ok": out["ok"], "busy": out["busy"], "errors": out["errors"],
            "wall_s": round(wall, 1), "clips_per_min": round(60 * out["ok"] / wall, 1),
            "latency_p50_s": pct(0.5), "latency_p95_s": pct(0.95), "latency_max_s": round(lat[-1], 2),
            "rss_start_mb": round(rss[0], 1), "rss_peak_mb": round(max(rss), 1), "rss_end_mb": round(rss_mb(), 1),
            "files_in_cache": files_in_cache(), "normal_call_after_s": round(recovered, 2)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="checkpoint directory (default: a tiny random model)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--queue", type=int, default=None, help="queue size (default: the app's limit)")
    args = ap.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    model = args.model or tiny_checkpoint(tempfile.mkdtemp(prefix="stunet-load-"))
    d, url = launch(model, queue_max_size=args.queue)
    try:
        result = run_load(url, args.clients, args.requests, args.steps, args.frames)
    finally:
        d.close()
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
