"""Measure stylized generation (issue 33): does the style rise with the strength while the motion stays?

    python scripts/measure_style.py --styles runs/style-outline runs/style-gradient runs/style-stripes \
        runs/style-outline-control --seeds 2 --out runs/measure-style

For every style directory (``stunet stylize``) and strength A in ``--strengths`` (default 0, 0.25, 0.5,
0.75, 1) the evaluation prompts (``stunet eval``'s, ``stunet/shapes/prompts.py``) are generated at every
seed with the base model's spatial weights interpolated toward the style's (``stylize.apply_style``). The
batches and their generators are ``stunet eval``'s, so every strength starts each clip from the same noise
and the strength-0 clips (the base model itself, shared by all styles) are ``stunet eval``'s clips. Per clip:
the share of frames the style detector (``stunet/shapes/style_detect.py``) reads as the style, and the
verdicts of the world's detectors (``stunet.shapes.metrics``: colour, shape, motion, motion ignoring its
rate, coherence; ``stunet.shapes.periodic``: periodic motion right). Each strength's verdicts are paired
clip by clip against strength 0 (``stunet.shapes.stats.paired_binary``: the difference in points, Tango's 95 %
interval, McNemar's exact p), as ``stunet ablate`` pairs a part against the unablated run. A ``world`` row per
style scores the world's own clips drawn in that style: the ceiling of both the style detector and the
motion detectors on that style.

Writes ``OUT/style.md`` (the table and one line per style on the claim: style frames rise with strength
while motion stays within 3 points of strength 0), ``OUT/style.json`` and ``OUT/clips.jsonl`` (every clip's
verdicts, read back on a rerun: an interrupted run resumes, and a rerun with more styles or strengths
generates only what is new).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stunet import stylize  # noqa: E402
from stunet.defaults import PRECISIONS  # noqa: E402
from stunet.shapes import style_detect, world  # noqa: E402
from stunet.shapes.stats import SIGNIFICANCE, paired_binary  # noqa: E402

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
PAIRED = ("motion", "direction", "periodic", "coherence", "colour", "shape")
CLAIM_POINTS = 3.0              # the claim: motion within this many points of strength 0


# ----------------------------------------------------------------------------- one clip
def verdicts(video, prompt: str, stride: int = 1) -> dict:
    """The world detectors' verdicts on one clip and how many of its frames the style detector reads as
    each style."""
    from stunet.shapes.metrics import evaluate_clip
    from stunet.shapes.periodic import evaluate_periodic
    s = evaluate_clip(video, prompt, stride)
    p = evaluate_periodic(video, prompt, stride)
    read = style_detect.detect_styles(video)
    return {"colour": bool(s.color_ok), "shape": bool(s.shape_ok), "motion": bool(s.motion_ok),
            "direction": bool(s.direction_ok), "coherence": bool(s.coherent),
            "periodic": None if p is None else bool(p.right),
            "styles": {k: read.count(k) for k in world.STYLES if read.count(k)}, "frames": len(read)}


def file_id(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


# ----------------------------------------------------------------------------- summary
def _pct(values) -> float | None:
    v = [x for x in values if x is not None]
    return 100.0 * sum(v) / len(v) if v else None


def style_frames(rows: list[dict], style: str) -> float:
    """% of all frames of ``rows`` the style detector reads as ``style``."""
    frames = sum(r["frames"] for r in rows)
    return 100.0 * sum(r["styles"].get(style, 0) for r in rows) / max(frames, 1)


def summarize(rows: list[dict], base: list[dict], style: str) -> dict:
    """One strength's clips (aligned with the strength-0 clips ``base``): style frames and paired verdicts."""
    out = {"clips": len(rows), "style_frames": style_frames(rows, style), "paired": {}}
    for d in PAIRED:
        pairs = [(a[d], b[d]) for a, b in zip(rows, base) if a[d] is not None and b[d] is not None]
        if not pairs:
            continue
        pb = paired_binary([a for a, _ in pairs], [b for _, b in pairs])
        out["paired"][d] = {"clips": pb.pairs, "pct": pb.a_pct, "at_zero": pb.b_pct, "difference": pb.difference,
                            "ci95": list(pb.ci95), "p": pb.p, "gained": pb.only_a, "lost": pb.only_b}
    return out


def world_rows(prompts: list[str], seeds: list[int], style: str, frames: int, size: int) -> list[dict]:
    """The world's own clips of the prompts drawn in ``style`` (the ceiling), scored the same way."""
    from stunet.shapes.prompts import world_seed
    return [{"prompt": p, "seed": s, **verdicts(world.make_clip(world.parse_caption(p), frames, size, 1,
                                                                 seed=world_seed(i, s), style=style).video, p)}
            for s in seeds for i, p in enumerate(prompts)]


def _cell(x: dict | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x['pct']:.{digits}f}"


def _delta(x: dict | None) -> str:
    if x is None:
        return "-"
    star = " *" if x["p"] < SIGNIFICANCE else ""
    lo, hi = x["ci95"]
    return f"{x['difference']:+.1f} [{lo:+.1f}, {hi:+.1f}]{star}"


def format_table(result: dict) -> str:
    s = result["settings"]
    lines = ["| style | strength | style frames % | motion % | Δ motion (95 % CI) | periodic % | Δ periodic "
             "| coherence % | Δ coherence | motion ignoring rate % | colour % | shape % |",
             "|---|---|---:|---:|---|---:|---|---:|---|---:|---:|---:|"]
    for r in result["rows"]:
        p = r["paired"]
        strength = "world" if r["strength"] == "world" else f"{r['strength']:g}"
        if r["strength"] == "world" or r["strength"] == 0.0:
            deltas = ["", "", ""]
        else:
            deltas = [_delta(p.get("motion")), _delta(p.get("periodic")), _delta(p.get("coherence"))]
        lines.append(f"| {r['label']} | {strength} | {r['style_frames']:.1f} | {_cell(p.get('motion'))} | {deltas[0]} "
                     f"| {_cell(p.get('periodic'))} | {deltas[1]} | {_cell(p.get('coherence'))} | {deltas[2]} "
                     f"| {_cell(p.get('direction'))} | {_cell(p.get('colour'))} | {_cell(p.get('shape'))} |")
    lines += ["", f"Style frames: % of all frames the style detector (`stunet/shapes/style_detect.py`) reads as the "
              f"row's style. Δ: points against strength 0 on the same (prompt, seed) clips (same noise), Tango's "
              f"95 % interval; * McNemar's exact p < {SIGNIFICANCE:g}. world: the world's own clips drawn in the "
              f"style (the detectors' ceiling). {s['prompts']} prompts x {len(s['seeds'])} seeds (seeds "
              f"{', '.join(map(str, s['seeds']))}), {s['steps']} {s['sampler']} steps, guidance {s['guidance']:g}, "
              f"{s['precision']}; base {s['model']}.", ""]
    for label, c in result["claims"].items():
        lines.append(f"* {label}: {c['sentence']}")
    return "\n".join(lines)


def claim(label: str, rows: list[dict]) -> dict:
    """The issue's claim for one style: style frames rise with strength, motion within 3 points of strength 0."""
    model = sorted((r for r in rows if r["strength"] != "world"), key=lambda r: r["strength"])
    shares = [r["style_frames"] for r in model]
    rises = all(b >= a for a, b in zip(shares, shares[1:]))
    deltas = [(r["strength"], r["paired"]["motion"]["difference"]) for r in model
              if r["strength"] > 0 and "motion" in r["paired"]]
    worst = max(deltas, key=lambda d: abs(d[1]), default=None)
    within = worst is None or abs(worst[1]) <= CLAIM_POINTS
    over = ", ".join(f"{r['strength']:g}" for r in model)
    text = (f"style frames {' -> '.join(f'{x:.0f}' for x in shares)} % over strengths "
            f"{over} ({'rising' if rises else 'not monotone'}); "
            + (f"largest motion change {worst[1]:+.1f} points (at {worst[0]:g}), "
               f"{'within' if within else 'beyond'} {CLAIM_POINTS:g}" if worst else "no motion pairs")
            + f": the claim {'holds' if rises and within else 'does not hold'} here.")
    return {"style_frames_rise": rises, "largest_motion_change": worst, "motion_within": within,
            "holds": bool(rises and within), "sentence": text}


# ----------------------------------------------------------------------------- run
def _load_done(path: Path, key: dict) -> list[dict]:
    if not path.is_file():
        return []
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    if not lines or lines[0].get("settings") != key:
        raise ValueError(f"{path} holds a run with other settings; use another --out")
    return lines[1:]


def measure(base, tok, styles: list, strengths: list[float], prompts: list[str], seeds: list[int], out: Path, *,
            precision, defaults, batch: int = 8, world_seeds: list[int] | None = None, model_name: str = "",
            log=None) -> dict:
    """Generate and score every (style, strength, prompt, seed) not yet in OUT/clips.jsonl; returns the result."""
    from stunet.pipeline import Pipeline
    from stunet.shapes.prompts import batch_generator
    sampling = {"steps": defaults.steps, "guidance": defaults.guidance, "sampler": defaults.sampler}
    base_id = "base:" + stylize.weights_hash(base)[:16]
    settings = {"prompts": len(prompts), "seeds": seeds, **sampling, "batch": batch, "precision": precision.name,
                "model": model_name}
    key = {**settings, "prompt_list": prompts, "base": base_id}
    out.mkdir(parents=True, exist_ok=True)
    path = out / "clips.jsonl"
    rows = _load_done(path, key)
    if not rows:
        path.write_text(json.dumps({"settings": key}) + "\n")
    done = {(r["id"], r["strength"], r["prompt"], r["seed"]) for r in rows}
    jobs = [(p, s) for s in seeds for p in prompts]

    def run(model_id: str, strength: float, make_model):
        todo = [(i, j) for i, j in enumerate(jobs) if (model_id, strength, j[0], j[1]) not in done]
        if not todo:
            return
        pipe = Pipeline(make_model(), tok, precision, defaults)
        t0 = time.perf_counter()
        for start in range(0, len(jobs), batch):
            chunk = jobs[start:start + batch]
            if all((model_id, strength, p, s) in done for p, s in chunk):
                continue
            videos = pipe.sample_batch([p for p, _ in chunk], generator=batch_generator(chunk[0][1], start), **sampling)
            with path.open("a") as f:
                for (p, s), v in zip(chunk, videos):
                    r = {"id": model_id, "strength": strength, "prompt": p, "seed": s, **verdicts(v, p)}
                    rows.append(r)
                    f.write(json.dumps(r) + "\n")
            if log:
                log(f"{model_id} at {strength:g}: {min(start + batch, len(jobs))}/{len(jobs)} clips "
                    f"({time.perf_counter() - t0:.0f} s)")

    run(base_id, 0.0, lambda: base)
    ids = {}
    for st in styles:
        ids[st.path] = "style:" + file_id(st.path / stylize.STYLE_WEIGHTS)
        for a in strengths:
            if a > 0:
                run(ids[st.path], a, lambda st=st, a=a: stylize.apply_style(base, st, a))
    by = {}
    for r in rows:
        by[(r["id"], r["strength"], r["prompt"], r["seed"])] = r
    zero = [by[(base_id, 0.0, p, s)] for p, s in jobs]
    cfg = base.config
    result = {"settings": {**settings, "strengths": strengths}, "rows": [], "claims": {}}
    for st in styles:
        label = label_of(st)
        mine = []
        for a in strengths:
            clips = zero if a == 0 else [by[(ids[st.path], a, p, s)] for p, s in jobs]
            mine.append({"label": label, "style": st.name, "dir": str(st.path), "groups": list(st.groups),
                         "strength": a, **summarize(clips, zero, st.name)})
        if world_seeds:
            w = world_rows(prompts, world_seeds, st.name, cfg.frames, cfg.height)
            mine.append({"label": label, "style": st.name, "dir": str(st.path), "groups": list(st.groups),
                         "strength": "world", **summarize(w, w, st.name)})
        result["rows"] += mine
        result["claims"][label] = claim(label, mine)
    return result


def label_of(style) -> str:
    """The table's name for a style: its style, `(clips)` when fine-tuned on moving clips (``--data clips``),
    `+ temporal (control)` for the negative control."""
    clips = style.info.get("run", {}).get("data", "frames") == "clips"
    return (style.name + (" (clips)" if clips else "")
            + (" + temporal (control)" if stylize.TEMPORAL in style.groups else ""))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--styles", nargs="+", required=True, metavar="DIR", help="style directories (stunet stylize)")
    p.add_argument("--out", required=True, help="folder for style.md, style.json and clips.jsonl")
    p.add_argument("--model", help="base checkpoint (default: the shipped model)")
    p.add_argument("--strengths", default=",".join(f"{a:g}" for a in STRENGTHS),
                   help="comma-separated strengths in [0, 1] (0, the pairing baseline, is always added)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per prompt")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--world-seeds", type=int, default=None,
                   help="seeds of the world's own styled clips (default: --seeds; 0: no world rows)")
    p.add_argument("--prompts", help="file with one caption per line (default: stunet eval's prompt set)")
    p.add_argument("--limit", type=int, help="only the first N prompts")
    p.add_argument("--batch", type=int, default=8, help="clips per sampling batch (as stunet eval)")
    p.add_argument("--steps", type=int, help="denoising steps (default: the model's own; quick checks only)")
    p.add_argument("--precision", choices=PRECISIONS, default=None)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import dataclasses
    args = parse_args(argv)
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        from stunet.checkpoint import load_pretrained, read_sampling
        from stunet.precision import resolve
        from stunet.shapes.prompts import seed_range, select_prompts
        prompts = select_prompts(args.prompts, args.limit)
        if args.batch < 1:
            raise ValueError("--batch must be >= 1")
        seeds = seed_range(args.first_seed, args.seeds)
        nw = args.seeds if args.world_seeds is None else args.world_seeds
        world_seeds = seed_range(args.first_seed, nw) if nw > 0 else []
        try:
            strengths = sorted({0.0, *(float(x) for x in args.strengths.split(",") if x.strip())})
        except ValueError:
            raise ValueError(f"--strengths must be numbers separated by commas, got {args.strengths!r}") from None
        if not all(0.0 <= a <= 1.0 for a in strengths):
            raise ValueError("--strengths must lie in [0, 1]")
        base, tok = load_pretrained(args.model)
        styles = [stylize.load_style(d) for d in args.styles]
        for st in styles:                                               # refused before any sampling
            stylize.check_style(base, st)
        labels = [label_of(st) for st in styles]
        if len(set(labels)) != len(labels):
            raise ValueError(f"two style directories of the same style and groups: {labels}")
        defaults = read_sampling(args.model)
        if args.steps is not None:
            if args.steps < 1:
                raise ValueError("--steps must be >= 1")
            defaults = dataclasses.replace(defaults, steps=args.steps)
        precision = resolve(args.precision)
        result = measure(base, tok, styles, strengths, prompts, seeds, Path(args.out), precision=precision,
                         defaults=defaults, batch=args.batch, world_seeds=world_seeds,
                         model_name=str(args.model or "the shipped model"), log=log)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    table = format_table(result)
    out = Path(args.out)
    (out / "style.md").write_text(table + "\n")
    (out / "style.json").write_text(json.dumps(result, indent=1))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
