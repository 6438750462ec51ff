"""Peak memory (and time) of the studio's largest allowed request, in-process, no server.

    python scripts/measure_memory.py                        # shapes architecture, random weights
    python scripts/measure_memory.py --model assets/stunet-shapes --steps 50

Runs ``Studio.generate`` exactly as the /generate handler does (Inspector, previews, MP4 and
GIF), with the most frames the limits allow and the most steps, and prints one JSON line:
resident memory before, peak (``ru_maxrss``) and after, the recording's size, and seconds.
Memory does not depend on the weights, so random weights of the same config measure the same.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="checkpoint directory (default: the shapes preset, random weights)")
    ap.add_argument("--preset", default="shapes")
    ap.add_argument("--steps", type=int, default=None, help="default: the limit (MAX_STEPS)")
    ap.add_argument("--frames", type=int, default=None, help="default: the limit (MAX_WINDOWS x window)")
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)

    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    from demo import limits as L
    from demo.studio import Studio
    from stunet.pipeline import Pipeline
    if args.model:
        pipe = Pipeline.from_pretrained(args.model)
    else:
        from stunet.config import preset
        from stunet.model import STUNet
        from stunet.shapes.data import tokenizer_for
        torch.manual_seed(0)
        cfg = preset(args.preset)
        pipe = Pipeline(STUNet(cfg).eval(), tokenizer_for(cfg))
    cfg = pipe.config
    frames = args.frames or L.frames_range(cfg.temporal_factor, cfg.frames)[1]
    steps = args.steps or L.MAX_STEPS
    from stunet.text import STOPWORDS
    prompt = " ".join([w for w in pipe.tokenizer.words if w not in STOPWORDS][:3])
    studio = Studio(pipe)
    before = rss_mb()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    outs = list(studio.generate(prompt, 0, steps, args.guidance, frames))
    rec = outs[-1][-1]
    studio.recording_of(rec)            # what opening Inspect adds: the clip sampled again with hooks
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "config": args.model or args.preset, "parameters": sum(p.numel() for p in pipe.model.parameters()),
        "frames": frames, "steps": steps, "size": f"{cfg.height}x{cfg.width}", "torch_threads": torch.get_num_threads(),
        "rss_before_mb": round(before, 1), "peak_rss_mb": round(peak, 1),
        "peak_before_request_mb": round(peak_before, 1), "rss_after_mb": round(rss_mb(), 1),
        "recording_mb": round(rec.recording.nbytes / 2**20, 1), "seconds": round(seconds, 1),
        "deadline_floor_s": L.JOB_DEADLINE_FLOOR_S, "deadline_margin": L.JOB_DEADLINE_MARGIN,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    main()
