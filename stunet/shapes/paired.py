"""A model against a reference on the same clips: ``stunet eval --against REFERENCE.json``.

Two ``stunet eval --json`` results with the same prompts, seeds and batch size start every clip from
the same initial noise, so their per-clip scores pair up by (prompt, seed). A paired comparison is
far more sensitive than two percentages side by side: only the clips where the two disagree (the
discordant pairs) carry information, and McNemar's exact test says whether their split could be
chance. This is how a distilled model is held against its teacher (issue 17's bar: every metric
within ``MAX_DROP`` points of the teacher, the periodic motions within ``MAX_PERIODIC_DROP``).

    python -m stunet eval --seeds 6 --json teacher.json
    python -m stunet eval --seeds 6 --model assets/stunet-shapes-fast --against teacher.json
"""
from __future__ import annotations

import json
from pathlib import Path
from . import world
from .compare import SIGNIFICANCE, mcnemar_p

MAX_DROP = 3.0                # points a fast model may lose on a metric against its reference
MAX_PERIODIC_DROP = 5.0       # ... and on each periodic motion
PERIODIC = ("bouncing", "spinning", "orbiting")
METRIC_FIELDS = (("colour", "color_ok"), ("shape", "shape_ok"), ("motion", "motion_ok"),
                 ("coherence", "coherent"))
PAIR_SETTINGS = ("steps", "guidance", "sampler", "frames", "size", "stride", "batch_size", "precision")


def load_reference(path: str | Path) -> dict:
    """A ``stunet eval --json`` result with per-clip scores of a model (not ``--ceiling-only``)."""
    try:
        result = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(result, dict) or not (result.get("clips") or {}).get("model"):
        raise ValueError(f"{path}: no per-clip model scores (write it with stunet eval --json, not --ceiling-only)")
    return result


def _same_clips(want: set, have: set) -> None:
    if want != have:
        raise ValueError(f"the runs are not on the same clips: {len(want - have)} of this run's {len(want)} "
                         f"(prompt, seed) pairs are not in the reference's {len(have)} "
                         "(use the same --seeds, --first-seed and prompts)")


def _key(clip: dict) -> tuple[str, int]:
    return clip["prompt"], int(clip["seed"])


def check_pairable(prompts, seeds, reference: dict) -> None:
    """Refuse, before any clip is generated, a run whose (prompt, seed) pairs are not the reference's."""
    _same_clips({(p, int(s)) for p in prompts for s in seeds}, {_key(c) for c in reference["clips"]["model"]})


def _all_ok(clip: dict) -> bool:
    return all(bool(clip.get(f)) for _, f in METRIC_FIELDS)


def _row(name: str, pairs: list[tuple[dict, dict]], ok, max_drop: float | None) -> dict:
    """One paired row; ``max_drop`` None: informational (no bar, ``holds`` None)."""
    m = [bool(ok(a)) for a, _ in pairs]
    r = [bool(ok(b)) for _, b in pairs]
    n = len(pairs)
    only_m = sum(a and not b for a, b in zip(m, r))
    only_r = sum(b and not a for a, b in zip(m, r))
    model_pct, ref_pct = 100.0 * sum(m) / n, 100.0 * sum(r) / n
    diff = model_pct - ref_pct
    return {"name": name, "clips": n, "reference": ref_pct, "model": model_pct, "difference": diff,
            "only_model": only_m, "only_reference": only_r, "p": mcnemar_p(only_m, only_r),
            "max_drop": max_drop, "holds": None if max_drop is None else diff >= -max_drop - 1e-9}


def paired_scores(model: dict, reference: dict, *, max_drop: float = MAX_DROP,
                  max_periodic_drop: float = MAX_PERIODIC_DROP) -> dict:
    """Per-metric and per-motion paired comparison of two ``evaluate_model`` results.

    Rows: colour, shape, motion, coherence, all four (bar: ``max_drop``), then each motion present
    (the periodic ones: bar ``max_periodic_drop``; the others: informational). ``holds``: every row
    with a bar is no more than its bar below the reference. ``settings_differ``: sampling settings
    that differ between the two runs (steps, sampler... are expected to for a distilled model; a
    different batch size or frame count means the clips did not start from the same noise).
    """
    mc, rc = (model.get("clips") or {}).get("model"), (reference.get("clips") or {}).get("model")
    if not mc or not rc:
        raise ValueError("both results need per-clip model scores")
    ref = {_key(c): c for c in rc}
    if len(ref) != len(rc) or len({_key(c) for c in mc}) != len(mc):
        raise ValueError("a run lists the same (prompt, seed) clip twice")
    _same_clips({_key(c) for c in mc}, set(ref))
    pairs = [(c, ref[_key(c)]) for c in mc]
    rows = [_row(label, pairs, lambda c, f=f: c.get(f), max_drop) for label, f in METRIC_FIELDS]
    rows.append(_row("all four", pairs, _all_ok, max_drop))
    for motion in world.MOTIONS:
        sel = [(a, b) for a, b in pairs if world.parse_caption(a["caption"]).motion == motion]
        if sel:
            rows.append(_row(motion, sel, lambda c: c.get("motion_ok"),
                             max_periodic_drop if motion in PERIODIC else None))
    ms, rs = model.get("settings", {}), reference.get("settings", {})
    differ = {k: [ms.get(k), rs.get(k)] for k in PAIR_SETTINGS if ms.get(k) != rs.get(k)}
    return {"pairs": len(pairs), "rows": rows, "holds": all(r["holds"] for r in rows if r["holds"] is not None),
            "settings_differ": differ, "same_noise": not ({"batch_size", "frames", "size"} & set(differ)),
            "model": ms.get("model"), "reference": rs.get("model"), "max_drop": max_drop,
            "max_periodic_drop": max_periodic_drop}


def _f(v: float, sign: bool = False) -> str:
    return f"{v:+.1f}" if sign else f"{v:.1f}"


def format_paired(result: dict) -> str:
    """Markdown: one row per metric and motion, the discordant counts and McNemar's p, and the bar."""
    lines = ["| against the reference | clips | reference % | this model % | difference | right only here |"
             " right only in the reference | McNemar p | bar |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        bar = "-" if r["holds"] is None else f"{'holds' if r['holds'] else 'FAILS'} (>= -{r['max_drop']:g})"
        p = f"{r['p']:.3f}" + (" *" if r["p"] < SIGNIFICANCE else "")
        lines.append(f"| {r['name']} | {r['clips']} | {_f(r['reference'])} | {_f(r['model'])} | "
                     f"{_f(r['difference'], True)} | {r['only_model']} | {r['only_reference']} | {p} | {bar} |")
    diff = ", ".join(f"{k} {a} vs {b}" for k, (a, b) in result["settings_differ"].items())
    lines += ["", f"Paired on {result['pairs']} (prompt, seed) clips against {result['reference'] or 'the reference'}"
              + (f" (settings: {diff})" if diff else "") + ". McNemar's exact test on the discordant clips; "
              f"* p < {SIGNIFICANCE:g}."
              + ("" if result["same_noise"] else " The runs differ in batch size or clip size, so their clips did not "
                 "start from the same noise: the pairs share a prompt and a seed only."),
              f"Bar: every metric within {result['max_drop']:g} points of the reference, each periodic motion within "
              f"{result['max_periodic_drop']:g}: **{'holds' if result['holds'] else 'fails'}**."]
    return "\n".join(lines)

