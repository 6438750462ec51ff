"""``stunet ablate``: what each temporal part is for, measured on the shapes world.

For every part (``stunet.interventions``) the evaluation prompts are generated again with the part
switched off, from the same noise as the unablated run (the batches and generators of ``stunet eval``,
so the unablated clips are ``stunet eval``'s), and the detectors (``stunet.shapes.metrics``,
``stunet.shapes.periodic``) read both. Per part and detector: how many of the clips the unablated
model gets right stay right, how many it breaks and fixes, and McNemar's exact p on that paired split
(``stunet.shapes.stats.paired_binary``). Writes ``OUT/ablate.md`` (table and one sentence per part),
``OUT/ablate.json`` and ``OUT/clips.jsonl`` (every clip's verdicts, read back on a rerun: an
interrupted run resumes).

    python -m stunet ablate --out runs/ablate --seeds 2
    python -m stunet ablate --out runs/quick --parts tconv:all --parts word:motion --limit 6 --seeds 1
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from . import interventions as I
from .defaults import PRECISIONS
from .shapes import world
from .shapes.stats import SIGNIFICANCE, paired_binary

DETECTORS = ("colour", "shape", "motion", "coherence", "periodic", "all")
FIELDS = {"colour": "color_ok", "shape": "shape_ok", "motion": "motion_ok", "coherence": "coherent"}
ROLES = {"colour": tuple(world.COLORS), "shape": world.SHAPES,
         "motion": tuple(dict.fromkeys([w for m in world.MOTIONS for w in m.split()] + list(world.SPEEDS)))}


def role_part(role: str) -> I.Part:
    """``word:colour`` / ``word:shape`` / ``word:motion``: whichever such words the prompt has, removed."""
    return I.Part("word", "+".join(ROLES[role]), label=f"word:{role}")


def parse(spec: str) -> I.Part:
    kind, _, target = spec.partition(":")
    return role_part(target) if kind == "word" and target in ROLES else I.parse_part(spec)


def default_parts(config) -> list[I.Part]:
    """Each temporal-attention layer as the identity, all of them as the identity and as uniform, each
    level's temporal convolutions and all of them, the colour / shape / motion words, the largest stride."""
    names = I.model_names(config)
    parts = [I.Part("tattn", n, "identity") for n in names["tattn"]]
    if names["tattn"]:
        parts += [I.Part("tattn", I.ALL, "identity"), I.Part("tattn", I.ALL, "uniform")]
    parts += [I.Part("tconv", n) for n in names["tconv"]] + ([I.Part("tconv", I.ALL)] if names["tconv"] else [])
    parts += [role_part(r) for r in ROLES]
    if max(config.strides) != 1:
        parts.append(I.Part("stride", str(max(config.strides))))
    return parts


# ----------------------------------------------------------------------------- clips and verdicts
def verdicts(video, prompt: str, stride: int = 1) -> dict:
    """One clip's detector verdicts: colour, shape, motion, coherence, all four, periodic (None if not periodic)."""
    from .shapes.metrics import evaluate_clip
    from .shapes.periodic import evaluate_periodic
    s = evaluate_clip(video, prompt, stride)
    out = {k: bool(getattr(s, f)) for k, f in FIELDS.items()}
    out["all"] = bool(s.ok)
    p = evaluate_periodic(video, prompt, stride)
    out["periodic"] = None if p is None else bool(p.right)
    out["reversed"] = None if p is None else bool(p.reversed)
    return out


def generate(pipe, part: I.Part | None, prompts, seeds, *, batch: int, sampling: dict, done: set,
             sink, log=None) -> None:
    """Clips of every (prompt, seed) not in ``done`` under ``part`` (None: unablated), scored, to ``sink``.

    Batches and generators as ``stunet.shapes.evaluate.model_clips``: the same noise as ``stunet eval``."""
    jobs = [(p, s) for s in seeds for p in prompts]
    name = "none" if part is None else part.name
    t0 = time.perf_counter()
    for start in range(0, len(jobs), batch):
        chunk = jobs[start:start + batch]
        if all((name, p, s) in done for p, s in chunk):
            continue
        gen = torch.Generator().manual_seed(1_000_003 * chunk[0][1] + start)
        parts = [] if part is None else [part]
        videos = I.sample_batch(pipe, [p for p, _ in chunk], parts, generator=gen, **sampling)
        for (p, s), v in zip(chunk, videos):
            sink({"part": name, "prompt": p, "seed": s, **verdicts(v, p)})
        if log:
            log(f"{name}: {min(start + batch, len(jobs))}/{len(jobs)} clips ({time.perf_counter() - t0:.0f} s)")


# ----------------------------------------------------------------------------- paired summary
def compare(rows: list[dict], base: list[dict]) -> dict:
    """Per detector: the paired comparison of a part's clips against the unablated ones (same order)."""
    out = {}
    for d in DETECTORS:
        pairs = [(a[d], b[d]) for a, b in zip(rows, base) if a[d] is not None and b[d] is not None]
        if not pairs:
            continue
        pb = paired_binary([a for a, _ in pairs], [b for _, b in pairs])
        right = sum(b for _, b in pairs)
        kept = sum(a and b for a, b in pairs)
        out[d] = {"clips": len(pairs), "unablated": pb.b_pct, "ablated": pb.a_pct, "broken": pb.only_b,
                  "fixed": pb.only_a, "stay_right": 100.0 * kept / right if right else None, "p": pb.p}
    per = [(a, b) for a, b in zip(rows, base) if b["periodic"]]
    out["reversed"] = sum(bool(a["reversed"]) for a, _ in per)
    out["periodic_right_before"] = len(per)
    motions = {}
    for a, b in zip(rows, base):
        m = world.parse_caption(a["prompt"]).motion
        k = motions.setdefault(m, [0, 0])
        k[0] += bool(b["motion"])
        k[1] += bool(a["motion"] and b["motion"])
    out["per_motion"] = {m: (100.0 * kept / right if right else None) for m, (right, kept) in motions.items()}
    return out


def sentence(part: I.Part, c: dict) -> str:
    """One plain sentence for a part, from its paired numbers."""
    def pct(d):
        v = c.get(d, {}).get("stay_right")
        return "-" if v is None else f"{v:.0f} %"
    worst = sorted(((v, m) for m, v in c["per_motion"].items() if v is not None))[:2]
    hit = ", ".join(f"{m} {v:.0f} %" for v, m in worst if v < 100)
    rev = c["reversed"]
    text = (f"With {I.describe(part)}, of the clips the unablated model got right, colour stays right in "
            f"{pct('colour')}, shape {pct('shape')}, motion {pct('motion')}"
            + (f" (least: {hit})" if hit else "") + f", coherence {pct('coherence')}")
    if c.get("periodic"):
        text += f", and periodic motion in {pct('periodic')}"
        if rev:
            text += f" ({rev} of {c['periodic_right_before']} reverse)"
    return text + "."


def format_table(result: dict) -> str:
    cols = [d for d in DETECTORS]
    base = result["unablated"]
    lines = ["| part | " + " | ".join(cols) + " | reversed |", "|---|" + "---:|" * (len(cols) + 1),
             "| unablated (% right) | " + " | ".join(f"{base[d]:.1f}" if base.get(d) is not None else "-"
                                                     for d in cols) + " | - |"]
    for r in result["parts"]:
        c = r["paired"]
        cells = []
        for d in cols:
            x = c.get(d)
            if x is None or x["stay_right"] is None:
                cells.append("-")
                continue
            star = " *" if x["p"] < SIGNIFICANCE else ""
            cells.append(f"{x['stay_right']:.0f}{star}")
        lines.append(f"| `{r['part']}` | " + " | ".join(cells) + f" | {c['reversed']}/{c['periodic_right_before']} |")
    s = result["settings"]
    lines += ["", f"Cells: % of the clips the unablated model got right that stay right with the part switched "
              f"off (paired, same noise); * McNemar's exact p < {SIGNIFICANCE:g} on the clips that changed. "
              f"reversed: periodic clips right before that turn the other way. {s['prompts']} prompts x "
              f"{len(s['seeds'])} seeds (seeds {', '.join(map(str, s['seeds']))}), {s['steps']} {s['sampler']} "
              f"steps, guidance {s['guidance']:g}, {s['precision']}.", ""]
    lines += [f"* `{r['part']}`: {r['sentence']}" for r in result["parts"]]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- command line
def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="stunet ablate", description="Switch each temporal part off in turn and "
                                "measure, paired against the unablated run, which detector verdicts stay right.")
    p.add_argument("--out", required=True, help="folder for ablate.md, ablate.json and clips.jsonl")
    p.add_argument("--model", help="checkpoint directory (default: the shipped model)")
    p.add_argument("--parts", action="append", metavar="PART",
                   help="a part (repeatable; see `stunet info --parts`; word:colour / word:shape / word:motion "
                        "take whichever such word each prompt has). Default: every temporal part")
    p.add_argument("--seeds", type=int, default=2, help="seeds per prompt")
    p.add_argument("--first-seed", type=int, default=0)
    p.add_argument("--prompts", help="file with one caption per line (default: stunet eval's prompt set)")
    p.add_argument("--limit", type=int, help="only the first N prompts")
    p.add_argument("--batch", type=int, default=8, help="clips per sampling batch (as stunet eval)")
    p.add_argument("--steps", type=int, help="denoising steps (default: the model's own; quick checks only)")
    p.add_argument("--precision", choices=PRECISIONS, default=None)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def _load_done(path: Path, key: dict) -> list[dict]:
    """Verdicts already in ``clips.jsonl`` from a run with the same settings (an interrupted run resumes)."""
    if not path.is_file():
        return []
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    if not lines or lines[0].get("settings") != key:
        raise ValueError(f"{path} holds a run with other settings; use another --out")
    return lines[1:]


def run_ablation(pipe, parts: list[I.Part], prompts: list[str], seeds: list[int], out: Path, *, batch: int = 8,
                 log=None) -> dict:
    """Every part against the unablated run; writes OUT/clips.jsonl as it goes and returns the result."""
    d = pipe.defaults
    sampling = {"steps": d.steps, "guidance": d.guidance, "sampler": d.sampler}
    settings = {"prompts": len(prompts), "seeds": seeds, **sampling, "batch": batch,
                "precision": pipe.precision.name}
    key = {**settings, "prompt_list": prompts}
    out.mkdir(parents=True, exist_ok=True)
    path = out / "clips.jsonl"
    rows = _load_done(path, key)
    if not rows:
        path.write_text(json.dumps({"settings": key}) + "\n")
    done = {(r["part"], r["prompt"], r["seed"]) for r in rows}

    def sink(r):
        rows.append(r)
        with path.open("a") as f:
            f.write(json.dumps(r) + "\n")

    t0 = time.perf_counter()
    for part in [None] + parts:
        generate(pipe, part, prompts, seeds, batch=batch, sampling=sampling, done=done, sink=sink, log=log)
    by = {}
    for r in rows:
        by.setdefault(r["part"], {})[(r["prompt"], r["seed"])] = r
    order = [(p, s) for s in seeds for p in prompts]
    base = [by["none"][k] for k in order]
    result = {"settings": settings, "seconds": time.perf_counter() - t0,
              "unablated": {dd: _pct([b[dd] for b in base]) for dd in DETECTORS}, "parts": []}
    for part in parts:
        c = compare([by[part.name][k] for k in order], base)
        result["parts"].append({"part": part.name, "what": I.describe(part), "paired": c,
                                "sentence": sentence(part, c)})
    return result


def _pct(values) -> float | None:
    v = [x for x in values if x is not None]
    return 100.0 * sum(v) / len(v) if v else None


def main(argv=None) -> int:
    args = parse_args(argv)
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        from .pipeline import Pipeline
        from .shapes.prompts import select_prompts
        prompts = select_prompts(args.prompts, args.limit)
        if args.seeds < 1 or args.batch < 1 or args.first_seed < 0:
            raise ValueError("--seeds and --batch must be >= 1, --first-seed >= 0")
        seeds = list(range(args.first_seed, args.first_seed + args.seeds))
        from .checkpoint import load_pretrained, read_sampling
        parts = [parse(p) for p in args.parts or []]
        if any(p.kind.startswith("patch") or p.kind == "none" for p in parts):
            raise ValueError("stunet ablate takes parts that switch something off (not none or patches)")
        model, tok = load_pretrained(args.model)
        parts = I.check_parts(parts or default_parts(model.config), model.config, prompts, tok)  # before sampling
        defaults = read_sampling(args.model)
        if args.steps is not None:
            if args.steps < 1:
                raise ValueError("--steps must be >= 1")
            defaults = dataclasses.replace(defaults, steps=args.steps)
        pipe = Pipeline(model, tok, args.precision, defaults)
        result = run_ablation(pipe, parts, prompts, seeds, Path(args.out), batch=args.batch, log=log)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    result["settings"]["model"] = str(args.model or "the shipped model")
    table = format_table(result)
    out = Path(args.out)
    (out / "ablate.md").write_text(table + "\n")
    (out / "ablate.json").write_text(json.dumps(result, indent=1))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())


def cli_parts(pipe, specs, settings: list) -> list[I.Part]:
    """``stunet generate --ablate PART ...``: the parts, checked against every clip's settings before any sampling."""
    if not specs:
        return []
    from .pipeline import Pipeline
    if not isinstance(pipe, Pipeline):
        raise ValueError("--ablate needs a STUNet checkpoint (the cascade baseline has its own networks)")
    parts = [parse(p) for p in specs]
    for s in settings:
        I.prepare(pipe, s, parts)
    return parts
