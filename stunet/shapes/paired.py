"""A model against a reference on the same clips: ``stunet eval --against REFERENCE.json``.

Two ``stunet eval --json`` results with the same prompts, seeds and batch size start every clip from
the same initial noise, so their per-clip scores pair up by (prompt, seed). A paired comparison is
far more sensitive than two percentages side by side: only the clips where the two disagree (the
discordant pairs) carry information (``stats.paired_binary``).

The verdict is a **non-inferiority** test, the bar any model or step count must pass to replace the
reference (the full model at its own 25 steps, 12 seeds):

* for colour, shape, motion, coherence and the three periodic motions pooled (bouncing, spinning,
  orbiting), the lower end of the 95 % paired interval of (candidate - reference) is above
  ``-MARGIN`` points; the interval is Tango's asymptotic score interval for paired proportions
  (``stats.tango_interval``), which keeps its width when few or no clips are discordant;
* no single periodic motion is lost: fewer right clips than the reference with McNemar's exact
  p below ``stats.SIGNIFICANCE``.

An interval needs enough pairs to be narrower than the margin: two identical runs whose clips are all
right pass the interval bar only from about 125 pairs (the interval's half-width is then
z^2 / (n + z^2), 3 points), so the periodic pool (9 prompts) needs 14 seeds before even a perfect match
passes; with discordant clips it needs more.

    python -m stunet eval --seeds 12 --json full.json
    python -m stunet eval --seeds 12 --model assets/stunet-shapes-fast --against full.json
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from . import world
from .stats import LEVEL, SIGNIFICANCE, paired_binary

MARGIN = 3.0                  # points: the lower end of a paired interval must be above -MARGIN
PERIODIC = ("bouncing", "spinning", "orbiting")
PERIODIC_POOLED = "periodic (pooled)"
METRIC_FIELDS = (("colour", "color_ok"), ("shape", "shape_ok"), ("motion", "motion_ok"),
                 ("coherence", "coherent"))
PAIR_SETTINGS = ("steps", "guidance", "sampler", "frames", "size", "stride", "batch_size", "precision")
NON_INFERIOR, NOT_LOST = "non-inferior", "not lost"     # the two kinds of bar a row can carry


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


def _holds(bar: str | None, d, margin: float) -> bool | None:
    if bar == NON_INFERIOR:
        return d.ci95[0] > -margin
    if bar == NOT_LOST:
        return not (d.difference < 0 and d.p < SIGNIFICANCE)
    return None


def _row(name: str, pairs: list[tuple[dict, dict]], ok, bar: str | None, margin: float) -> dict:
    """One paired row: rates, discordant counts, Tango's interval, McNemar's p, and its bar (None: informational)."""
    d = paired_binary([ok(a) for a, _ in pairs], [ok(b) for _, b in pairs])
    return {"name": name, "clips": d.pairs, "reference": d.b_pct, "model": d.a_pct, "difference": d.difference,
            "ci95": list(d.ci95), "only_model": d.only_a, "only_reference": d.only_b, "p": d.p,
            "bar": bar, "holds": _holds(bar, d, margin)}


@dataclass(frozen=True)
class Verdict:
    """The non-inferiority verdict: ``passed``, the rows that ``failed`` (names), and ``line``, one printed line."""
    passed: bool
    failed: tuple[str, ...]
    line: str


def verdict(rows: list[dict], margin: float = MARGIN, reference: str | None = None) -> Verdict:
    """PASS when every row with a bar holds; else FAIL naming each failing row and why."""
    failed = [r for r in rows if r["holds"] is False]
    n = max((r["clips"] for r in rows), default=0)
    head = f"Verdict against {reference or 'the reference'} ({n} pairs): "
    if not failed:
        return Verdict(True, (), head + f"PASS (colour, shape, motion, coherence, periodic pooled: lower end of the "
                       f"{LEVEL:.0%} paired interval above -{margin:g} points; no periodic motion lost at McNemar "
                       f"p < {SIGNIFICANCE:g}).")
    why = [f"{r['name']} (interval from {r['ci95'][0]:+.1f} points, not above -{margin:g})" if r["bar"] == NON_INFERIOR
           else f"{r['name']} lost ({r['only_model']} clips won, {r['only_reference']} lost, McNemar p = {r['p']:.3f})"
           for r in failed]
    return Verdict(False, tuple(r["name"] for r in failed), head + "FAIL: " + "; ".join(why) + ".")


def paired_scores(model: dict, reference: dict, *, margin: float = MARGIN) -> dict:
    """Per-metric and per-motion paired comparison of two ``evaluate_model`` results, and the verdict.

    Rows: colour, shape, motion, coherence (bar: non-inferior within ``margin``), all four (informational),
    the periodic motions pooled (non-inferior), then each motion present (periodic: not lost; the others:
    informational). ``verdict``: ``Verdict`` as a dict; ``holds``: its ``passed``. ``settings_differ``:
    sampling settings that differ between the two runs (steps, sampler... are expected to for a distilled
    model; a different batch size or frame count means the clips did not start from the same noise).
    """
    mc, rc = (model.get("clips") or {}).get("model"), (reference.get("clips") or {}).get("model")
    if not mc or not rc:
        raise ValueError("both results need per-clip model scores")
    ref = {_key(c): c for c in rc}
    if len(ref) != len(rc) or len({_key(c) for c in mc}) != len(mc):
        raise ValueError("a run lists the same (prompt, seed) clip twice")
    _same_clips({_key(c) for c in mc}, set(ref))
    pairs = [(c, ref[_key(c)]) for c in mc]
    motion_of = lambda c: world.parse_caption(c["caption"]).motion                  # noqa: E731
    motion_ok = lambda c: c.get("motion_ok")                                        # noqa: E731
    rows = [_row(label, pairs, lambda c, f=f: c.get(f), NON_INFERIOR, margin) for label, f in METRIC_FIELDS]
    rows.append(_row("all four", pairs, _all_ok, None, margin))
    pool = [(a, b) for a, b in pairs if motion_of(a) in PERIODIC]
    if pool:
        rows.append(_row(PERIODIC_POOLED, pool, motion_ok, NON_INFERIOR, margin))
    for motion in world.MOTIONS:
        sel = [(a, b) for a, b in pairs if motion_of(a) == motion]
        if sel:
            rows.append(_row(motion, sel, motion_ok, NOT_LOST if motion in PERIODIC else None, margin))
    ms, rs = model.get("settings", {}), reference.get("settings", {})
    differ = {k: [ms.get(k), rs.get(k)] for k in PAIR_SETTINGS if ms.get(k) != rs.get(k)}
    v = verdict(rows, margin, rs.get("model"))
    return {"pairs": len(pairs), "rows": rows, "verdict": {**asdict(v), "failed": list(v.failed)}, "holds": v.passed,
            "settings_differ": differ, "same_noise": not ({"batch_size", "frames", "size"} & set(differ)),
            "model": ms.get("model"), "reference": rs.get("model"), "margin": margin,
            "significance": SIGNIFICANCE, "interval": f"Tango score, {LEVEL:.0%}"}


def _f(v: float, sign: bool = False) -> str:
    return f"{v:+.1f}" if sign else f"{v:.1f}"


def _bar_text(r: dict, margin: float) -> str:
    if r["holds"] is None:
        return "-"
    mark = "holds" if r["holds"] else "FAILS"
    return f"{mark} (low > -{margin:g})" if r["bar"] == NON_INFERIOR else f"{mark} (not lost)"


def format_paired(result: dict) -> str:
    """Markdown: one row per metric and motion (discordant counts, interval, McNemar's p, bar), then the verdict."""
    margin = result["margin"]
    lines = ["| against the reference | clips | reference % | this model % | difference | 95 % interval | "
             "right only here | right only in the reference | McNemar p | bar |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for r in result["rows"]:
        p = f"{r['p']:.3f}" + (" *" if r["p"] < SIGNIFICANCE else "")
        lo, hi = r["ci95"]
        lines.append(f"| {r['name']} | {r['clips']} | {_f(r['reference'])} | {_f(r['model'])} | "
                     f"{_f(r['difference'], True)} | {_f(lo, True)} to {_f(hi, True)} | {r['only_model']} | "
                     f"{r['only_reference']} | {p} | {_bar_text(r, margin)} |")
    diff = ", ".join(f"{k} {a} vs {b}" for k, (a, b) in result["settings_differ"].items())
    lines += ["", f"Paired on {result['pairs']} (prompt, seed) clips against {result['reference'] or 'the reference'}"
              + (f" (settings: {diff})" if diff else "") + ". Interval: Tango's score interval of the paired "
              f"difference (points); McNemar's exact test on the discordant clips, * p < {SIGNIFICANCE:g}."
              + ("" if result["same_noise"] else " The runs differ in batch size or clip size, so their clips did not "
                 "start from the same noise: the pairs share a prompt and a seed only."),
              f"Bar (non-inferiority): colour, shape, motion, coherence and the periodic motions pooled with the "
              f"interval's lower end above -{margin:g} points, and no periodic motion lost (fewer right, "
              f"p < {SIGNIFICANCE:g}).",
              "", result["verdict"]["line"]]
    return "\n".join(lines)
