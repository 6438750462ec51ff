"""``stunet compare``: STUNet (the whole clip at once) against a keyframe cascade (issue 18).

Lumiere's central claim: a model that generates all frames at once keeps fast periodic motion that
a keyframe cascade (keyframes every ``periodic.KEYFRAME_STRIDE`` frames, then temporal
super-resolution between them) aliases. This module measures it on the shapes world:

* the prompt set (``compare_prompts``): slow / normal / quick spinning (squares and triangles: a
  circle's spin has no orientation to follow), orbiting and bouncing for every shape, plus the four
  linear motions for the sanity bar; ``quick=True`` a smaller set;
* three sources of clips per (prompt, seed), each sampled in batches from its own seeded generator:
  ``stunet`` (a ``Pipeline``), ``cascade`` (``sample_batch``), and the **oracle** control, the
  cascade's TSR stage alone (``fill``) on the world's TRUE keyframes (frames 0, 4, ..., 28 of the
  clip the prompt describes, rendered by the world with the clip's seed): what the cascade loses
  with keyframes that are exactly right is interpolation error, the rest is keyframe aliasing. The
  world's own clips (``world``, the ceiling) come free with the oracle's keyframes. Optionally a
  ``reference`` STUNet (another budget, e.g. the shipped model) on the same generators as ``stunet``:
  reported beside the others, never part of the verdict (which compares the equal-budget pair);
* every clip is scored by the four detectors (``metrics.evaluate_clip``: colour, shape, motion,
  coherence) and, for periodic prompts, the periodic detectors (``periodic.evaluate_periodic``);
* ``aggregate``: per model x motion x speed (x shape for spins, whose period depends on the shape):
  share right, mean relative rate error, reversals (apart), the motion's cycles per keyframe
  interval (from the world's true parameters); and the sanity bar, colour / shape / linear motion
  >= ``SANITY_BAR`` % for the cascade (else the comparison is unfair);
* ``write_outputs``: ``results.json`` (per-clip rows + aggregates), ``table.md`` (which model is
  better per motion and speed, by how much, whether the sanity bar holds) and ``rate_error.png``
  (mean relative rate error against cycles per keyframe interval, the keyframes' Nyquist limit
  marked).

The studio's Compare tab uses ``measure`` (one clip's rate, period and sense) and the picture
helpers ``side_by_side`` / ``xt_pair``.

Reproducibility: a clip depends on (prompt set, seeds, batch size, steps, guidance, sampler); each
batch's generator is seeded from its first clip's seed and its position, as in ``stunet eval``.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import metrics, periodic, world
from .periodic import KEYFRAME_STRIDE, NYQUIST, RATE_TOLERANCE, SPEED_NAMES

MODELS = ("stunet", "reference", "cascade", "oracle", "world")
LABELS = {"stunet": "STUNet", "reference": "reference STUNet (its own budget)", "cascade": "cascade",
          "oracle": "oracle (TSR on true keyframes)", "world": "world (true clips)"}
SHORT = {"stunet": "STUNet", "reference": "reference", "cascade": "cascade", "oracle": "oracle", "world": "world"}
SANITY_BAR = 90.0             # % colour, shape and linear motion the cascade must reach for a fair comparison
SANITY_METRICS = ("color", "shape", "linear_motion")
DEFAULT_SEEDS = 3
CLIP_FRAMES = 32              # the cascade's clip: 8 keyframes at stride 4
SEED_BASE = 1_000_003         # batch generator seed = SEED_BASE * seed + batch start (+ ORACLE_OFFSET)
ORACLE_OFFSET = 500_000
WORLD_SEED = 10_007           # the world clip of (prompt i, seed s) is drawn with seed WORLD_SEED * s + i
SPEED_ORDER = {"slow": 0, "normal": 1, "quick": 2}
EQUAL_BUDGET_STUNET = "equal-budget-stunet"   # a cascade folder's STUNet trained on the same budget (the fair pair)


# ----------------------------------------------------------------------------- prompts
def compare_prompts(quick: bool = False) -> list[str]:
    """The fixed prompt set.

    Full: spinning (square, triangle), orbiting and bouncing (circle, square, triangle), each slowly,
    at normal speed and quickly (24 periodic prompts), then moving left / right / up / down (4). Colours
    cycle through the palette. ``quick``: one shape per periodic motion (square spin, triangle spin at
    the quick speed only, where its period sits on the keyframes' Nyquist limit; circle orbit and bounce)
    and the four linear motions (14 prompts).
    """
    colors = list(world.COLORS)
    out: list[world.ClipSpec] = []
    for motion in periodic.PERIODIC_MOTIONS:
        for shape in world.SHAPES:
            if motion == "spinning" and shape == "circle":
                continue
            if quick and shape != ("square" if motion == "spinning" else "circle") and \
                    not (motion == "spinning" and shape == "triangle"):
                continue
            for speed in ("slowly", None, "quickly"):
                if quick and motion == "spinning" and shape == "triangle" and speed != "quickly":
                    continue
                out.append(world.ClipSpec(colors[len(out) % len(colors)], shape, motion, speed))
    for i, motion in enumerate(world.LINEAR):
        out.append(world.ClipSpec(colors[(len(out) + i) % len(colors)], world.SHAPES[i % 3], motion, None))
    return [s.caption for s in out]


def _seed_list(seeds) -> list[int]:
    if isinstance(seeds, (int, np.integer)):
        if seeds < 1:
            raise ValueError("seeds must be >= 1")
        return list(range(int(seeds)))
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("no seeds")
    return seeds


def world_seed(prompt_index: int, seed: int) -> int:
    """The world seed of the clip (prompt ``prompt_index``, ``seed``): the same as ``stunet eval``'s."""
    return WORLD_SEED * int(seed) + int(prompt_index)


def true_clip(prompt: str, prompt_index: int, seed: int, size: int, frames: int = CLIP_FRAMES) -> np.ndarray:
    """The world's clip the (prompt, seed) describes: (frames, size, size, 3) uint8, base frames 0..frames-1."""
    return world.make_clip(world.parse_caption(prompt), frames, size, 1, seed=world_seed(prompt_index, seed)).video


# ----------------------------------------------------------------------------- scoring
def score(video: np.ndarray, prompt: str, stride: int = 1, interval: int = KEYFRAME_STRIDE) -> dict:
    """One clip against its prompt: the four detectors and, for a periodic prompt, the periodic ones.

    A flat JSON-able row: prompt, motion, speed ("slow" | "normal" | "quick"), shape, ``linear``,
    ``periodic`` (a prompt the periodic detectors can time), ``cycles_per_keyframe`` (periodic only),
    color_ok, shape_ok, motion_ok, coherent; for periodic prompts measurable, right, rate_error,
    reversed, expected / measured period and sense, and why not measurable.
    """
    spec = world.parse_caption(prompt)
    s = metrics.evaluate_clip(np.asarray(video), spec, stride)
    row = {"prompt": spec.caption, "motion": spec.motion, "speed": SPEED_NAMES[spec.speed], "shape": spec.shape,
           "linear": spec.motion in world.LINEAR, "periodic": periodic.scorable(spec),
           "cycles_per_keyframe": None, "color_ok": s.color_ok, "shape_ok": s.shape_ok, "motion_ok": s.motion_ok,
           "coherent": s.coherent}
    v = periodic.evaluate_periodic(video, spec, stride)
    if v is not None:
        row.update(cycles_per_keyframe=periodic.cycles_per_keyframe(spec, interval), measurable=v.measurable, right=v.right,
                   rate_error=v.rate_error, reversed=v.reversed, expected_period=v.expected_period,
                   measured_period=v.measured_period, expected_direction=v.expected_direction,
                   measured_direction=v.measured_direction, reason=v.reading.reason)
    return metrics._jsonable(row)


def measure(video: np.ndarray, prompt: str, stride: int = 1) -> dict:
    """What the periodic detectors read on one clip, for display (the studio's Compare tab).

    Keys: ``scorable`` (False: the prompt is not a shapes-world caption with a periodic motion the detectors
    can time; ``reason`` says why), motion, rate, ``unit``, period (base frames), direction, right,
    rate_error, reversed, expected_period, expected_direction, measurable, reason; ``text``: one line.
    """
    try:
        spec = world.parse_caption(prompt)
    except ValueError:
        return {"scorable": False, "reason": "not a shapes-world caption (colour, shape, motion)",
                "text": "not measured: the prompt is not a shapes-world caption"}
    if not periodic.scorable(spec):
        why = ("a circle's spin has no orientation to follow" if spec.motion == "spinning"
               else f"{spec.motion} is not periodic (spinning, orbiting, bouncing are)")
        return {"scorable": False, "motion": spec.motion, "reason": why, "text": f"not measured: {why}"}
    v = periodic.evaluate_periodic(np.asarray(video), spec, stride)
    r = v.reading
    unit = {"spinning": "degrees / frame", "orbiting": "degrees / frame", "bouncing": "bounces / frame"}[spec.motion]
    d = {"scorable": True, "motion": spec.motion, "measurable": v.measurable, "rate": r.rate, "unit": unit,
         "period": v.measured_period, "direction": v.measured_direction, "right": v.right,
         "rate_error": v.rate_error, "reversed": v.reversed, "expected_period": v.expected_period,
         "expected_direction": v.expected_direction, "reason": r.reason,
         "cycles_per_keyframe": periodic.cycles_per_keyframe(spec)}
    if not v.measurable:
        d["text"] = f"not measurable: {r.reason}"
    else:
        rate = f"{r.rate:.2f} {unit}" if spec.motion != "bouncing" else f"{r.rate:.3f} {unit}"
        sense = v.measured_direction or "sense undecided"
        verdict = "right" if v.right else ("REVERSED" if v.reversed else "wrong")
        d["text"] = (f"{rate}, period {v.measured_period:.1f} frames (prompt: {v.expected_period:.1f}), {sense} "
                     f"(prompt: {v.expected_direction}); rate error {100 * v.rate_error:.0f} %: {verdict}")
    return metrics._jsonable(d)


# ----------------------------------------------------------------------------- clips
def _batches(jobs: list, batch_size: int):
    for start in range(0, len(jobs), batch_size):
        yield start, jobs[start:start + batch_size]


def _generator(seed: int, start: int, offset: int = 0):
    import torch
    return torch.Generator().manual_seed(SEED_BASE * int(seed) + int(start) + offset)


def _check_videos(videos, n: int, frames: int | None, who: str) -> np.ndarray:
    v = np.asarray(videos)
    if v.dtype != np.uint8 or v.ndim != 5 or v.shape[0] != n or v.shape[-1] != 3:
        raise ValueError(f"{who} returned {v.dtype} {v.shape}, not {n} uint8 clips (b t h w 3)")
    if frames is not None and v.shape[1] != frames:
        raise ValueError(f"{who} returned {v.shape[1]}-frame clips, not {frames}")
    return v


def keyframe_indices(cascade) -> list[int]:
    kf = [int(k) for k in getattr(cascade, "keyframe_frames", range(0, CLIP_FRAMES, KEYFRAME_STRIDE))]
    if len(kf) < 2 or kf[0] != 0 or any(b <= a for a, b in zip(kf, kf[1:])):
        raise ValueError(f"the cascade's keyframe_frames must start at 0 and increase, got {kf}")
    return kf


def run(stunet, cascade, prompts: Sequence[str] | None = None, seeds=DEFAULT_SEEDS, *, batch_size: int = 8,
        steps: int | None = None, guidance: float | None = None, sampler: str | None = None, oracle: bool = True,
        reference=None, keep_clips: bool = False, progress: Callable[[str], None] | None = None) -> dict:
    """Generate and score every (prompt, seed) with both models (and the oracle control and the world).

    stunet: anything with ``sample_batch(prompts, generator=, steps=, guidance=, sampler=, frames=)`` ->
    (b t h w 3) uint8 (a ``Pipeline``); cascade: ``sample_batch(prompts, generator=, steps=, guidance=,
    sampler=)``, ``fill(prompts, keyframes, generator=)`` and ``keyframe_frames`` (a ``CascadePipeline``);
    reference: None or a second STUNet like ``stunet``, sampled on the same generators (rows ``reference``).
    steps / guidance / sampler None: each model's own. Returns the JSON-able result (``aggregate``'s keys,
    ``settings``, ``prompts``, per-clip ``rows``, ``seconds``); with ``keep_clips`` also ``videos``
    ({model: [(prompt, seed, video)]}, not JSON-able).
    """
    prompts = list(prompts) if prompts is not None else compare_prompts()
    if not prompts:
        raise ValueError("no prompts")
    for p in prompts:
        world.parse_caption(p)
    seeds = _seed_list(seeds)
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    kf = keyframe_indices(cascade)
    frames = kf[-1] + (kf[1] - kf[0])                 # keyframes span the clip: 0, 4, ..., 28 -> 32 frames
    kw = {k: v for k, v in (("steps", steps), ("guidance", guidance), ("sampler", sampler)) if v is not None}
    jobs = [(i, p, s) for s in seeds for i, p in enumerate(prompts)]
    clips: dict[str, list] = {m: [] for m in MODELS}
    seconds = dict.fromkeys(("stunet", "cascade", "oracle", "score") + (("reference",) if reference else ()), 0.0)
    say = progress or (lambda msg: None)
    t_all = time.perf_counter()
    for start, chunk in _batches(jobs, batch_size):
        texts = [p for _, p, _ in chunk]
        first_seed = chunk[0][2]
        for name, model, who in (("stunet", stunet, "the STUNet"), ("reference", reference, "the reference STUNet")):
            if model is None:
                continue
            t0 = time.perf_counter()
            v = _check_videos(model.sample_batch(texts, generator=_generator(first_seed, start), frames=frames, **kw),
                              len(chunk), frames, who)
            clips[name] += [(i, p, s, x) for (i, p, s), x in zip(chunk, v)]
            seconds[name] += time.perf_counter() - t0
        t1 = time.perf_counter()
        c = _check_videos(cascade.sample_batch(texts, generator=_generator(first_seed, start), **kw),
                          len(chunk), frames, "the cascade")
        clips["cascade"] += [(i, p, s, x) for (i, p, s), x in zip(chunk, c)]
        t2 = time.perf_counter()
        seconds["cascade"] += t2 - t1
        if oracle:
            size = c.shape[2]
            true = [true_clip(p, i, s, size, frames) for i, p, s in chunk]
            keys = np.stack([t[kf] for t in true])
            o = _check_videos(cascade.fill(texts, keys, generator=_generator(first_seed, start, ORACLE_OFFSET), **kw),
                              len(chunk), frames, "the cascade's fill")
            clips["oracle"] += [(i, p, s, x) for (i, p, s), x in zip(chunk, o)]
            clips["world"] += [(i, p, s, x) for (i, p, s), x in zip(chunk, true)]
            seconds["oracle"] += time.perf_counter() - t2
        say(f"generated {start + len(chunk)}/{len(jobs)} prompts x seeds ({time.perf_counter() - t_all:.0f} s)")
    t0 = time.perf_counter()
    rows = []
    for model in MODELS:
        for i, p, s, video in clips[model]:
            rows.append({"model": model, "seed": s, "world_seed": world_seed(i, s),
                         **score(video, p, interval=kf[1] - kf[0])})
    seconds["score"] = time.perf_counter() - t0
    result = {"settings": {"prompts": len(prompts), "seeds": seeds, "frames": frames, "keyframes": kf,
                           "keyframe_interval": kf[1] - kf[0], "batch_size": batch_size, "steps": steps,
                           "guidance": guidance, "sampler": sampler, "oracle": oracle,
                           "reference": reference is not None},
              "prompts": prompts, **aggregate(rows, kf[1] - kf[0]), "rows": rows, "seconds": seconds}
    if keep_clips:
        result["videos"] = {m: [(p, s, x) for _, p, s, x in clips[m]] for m in MODELS if clips[m]}
    return result


# ----------------------------------------------------------------------------- aggregates
def _pct(xs) -> float:
    xs = [bool(x) for x in xs]
    return 100.0 * sum(xs) / len(xs) if xs else math.nan


def _periodic_stats(rows: list[dict]) -> dict:
    """n, measurable, right %, mean / max relative rate error over the measurable clips, reversals."""
    meas = [r for r in rows if r.get("measurable")]
    errs = [r["rate_error"] for r in meas if r.get("rate_error") is not None]
    return {"n": len(rows), "measurable": len(meas), "right_pct": _pct([r.get("right") for r in rows]),
            "mean_rate_error": float(np.mean(errs)) if errs else math.nan,
            "max_rate_error": float(np.max(errs)) if errs else math.nan,
            "reversed": sum(bool(r.get("reversed")) for r in rows)}


def _row_key(r: dict) -> tuple[str, str, str]:
    return r["motion"], r["speed"], r["shape"] if r["motion"] == "spinning" else "any"


def _better(a: dict | None, b: dict | None) -> dict | None:
    """Which of two periodic aggregates (STUNet a, cascade b) is better: more right, else less rate error."""
    if not a or not b or not a["n"] or not b["n"]:
        return None
    dr = a["right_pct"] - b["right_pct"]
    ea, eb = a["mean_rate_error"], b["mean_rate_error"]
    de = (eb - ea) if (math.isfinite(ea) and math.isfinite(eb)) else math.nan    # > 0: STUNet's error lower
    if abs(dr) >= 0.5:
        winner = "stunet" if dr > 0 else "cascade"
    elif math.isfinite(de) and abs(de) >= 0.01:
        winner = "stunet" if de > 0 else "cascade"
    elif math.isfinite(ea) != math.isfinite(eb):
        winner = "stunet" if math.isfinite(ea) else "cascade"
    else:
        winner = "tie"
    return {"winner": winner, "right_points": dr, "rate_error_points": 100.0 * de if math.isfinite(de) else math.nan}


SIGNIFICANCE = 0.05           # the paired verdict: McNemar's exact p below this (the bootstrap interval is descriptive)
BOOTSTRAP_RESAMPLES = 4000
BOOTSTRAP_SEED = 0


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value for paired right / wrong outcomes: ``only_a`` pairs right for A alone,
    ``only_b`` for B alone (the discordant pairs; under no difference each is Binomial(n, 1/2))."""
    n, k = only_a + only_b, min(only_a, only_b)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


def paired(rows: Sequence[dict], a: str = "stunet", b: str = "cascade") -> dict | None:
    """The pair's difference on the SAME (prompt, seed) periodic clips, with its uncertainty.

    ``pairs``: clips both models made; ``only_a`` / ``only_b``: right for one model alone; ``right_points``:
    right % of ``a`` minus ``b``, with ``ci95`` (a percentile bootstrap over the pairs, seeded, so the table
    is reproducible) and ``p`` (exact McNemar). ``rate_error_points``: mean over the pairs both measured of
    (``b``'s rate error - ``a``'s) in points (> 0: ``a`` closer to the prompt), with its ``rate_error_ci95``.
    None when no pair exists.
    """
    key = lambda r: (r["prompt"], r.get("seed"))                                  # noqa: E731
    ra = {key(r): r for r in rows if r["model"] == a and r.get("periodic")}
    rb = {key(r): r for r in rows if r["model"] == b and r.get("periodic")}
    keys = sorted(set(ra) & set(rb))
    if not keys:
        return None
    x = np.array([bool(ra[k].get("right")) for k in keys], float)
    y = np.array([bool(rb[k].get("right")) for k in keys], float)
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    idx = rng.integers(0, len(keys), (BOOTSTRAP_RESAMPLES, len(keys)))
    boot = 100.0 * (x[idx] - y[idx]).mean(1)
    out = {"models": [a, b], "pairs": len(keys), "only_a": int(((x == 1) & (y == 0)).sum()),
           "only_b": int(((x == 0) & (y == 1)).sum()), "right_points": float(100.0 * (x - y).mean()),
           "ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]}
    out["p"] = mcnemar_p(out["only_a"], out["only_b"])
    both = [k for k in keys if ra[k].get("rate_error") is not None and rb[k].get("rate_error") is not None]
    out["rate_error_pairs"] = len(both)
    out["rate_error_points"] = out["rate_error_ci95"] = None
    if both:
        d = 100.0 * np.array([rb[k]["rate_error"] - ra[k]["rate_error"] for k in both])
        bd = d[rng.integers(0, len(d), (BOOTSTRAP_RESAMPLES, len(d)))].mean(1)
        out["rate_error_points"] = float(d.mean())
        out["rate_error_ci95"] = [float(np.percentile(bd, 2.5)), float(np.percentile(bd, 97.5))]
    return out


def paired_text(p: dict | None) -> str:
    """One sentence on ``paired``'s result: the difference, its interval and whether it could be chance."""
    if not p:
        return "No clip pairs to test."
    a, b = (SHORT.get(m, m) for m in p["models"])
    lo, hi = p["ci95"]
    verdict = (f"a difference McNemar's exact test puts beyond chance (p < {SIGNIFICANCE:g})" if p["p"] < SIGNIFICANCE
               else f"not distinguishable from chance at this sample size (McNemar p >= {SIGNIFICANCE:g})")
    text = (f"Paired over {p['pairs']} periodic clips (same prompt and seed): {a} right on {p['only_a']} that {b} "
            f"got wrong, {b} on {p['only_b']} that {a} got wrong; {a} minus {b} = {p['right_points']:+.1f} pts right "
            f"(95 % bootstrap interval {lo:+.1f} to {hi:+.1f}; McNemar p = {p['p']:.3g}): {verdict}.")
    if p.get("rate_error_points") is not None:
        d, (elo, ehi) = p["rate_error_points"], p["rate_error_ci95"]
        text += (f" Rate error, {p['rate_error_pairs']} clips both measured: {a}'s mean is {abs(d):.1f} pts "
                 f"{'lower' if d > 0 else 'higher'} than {b}'s ({b} minus {a} {d:+.1f}, interval {elo:+.1f} to {ehi:+.1f}).")
    return text


def claim_text(result: dict) -> str:
    """The verdict on Lumiere's claim (whole-clip generation keeps periodic motion that a keyframe cascade loses)
    in plain words: held, contradicted, or not shown, on the paired test of the same clips (McNemar p below
    ``SIGNIFICANCE``), with the rate-error difference where its interval excludes zero; the ``reference``
    STUNet, when there is one, is reported after it and outside it (its budget differs)."""
    p = result.get("paired")
    if not p:
        return "No verdict on Lumiere's claim: no periodic clip was made by both STUNet and the cascade."
    if (result.get("sanity_bar") or {}).get("holds") is False:
        return ("No verdict on Lumiere's claim: the cascade fails its sanity bar, so its periodic errors could be "
                "a broken model's.")
    d, (lo, hi), n = p["right_points"], p["ci95"], p["pairs"]
    stats = f"{n} paired periodic clips, STUNet minus cascade {d:+.1f} pts right, 95 % interval {lo:+.1f} to {hi:+.1f}, " \
            f"McNemar p = {p['p']:.2g}"
    if p["p"] < SIGNIFICANCE:
        head = ("**Lumiere's claim holds at this budget**: STUNet got more periodic clips right than the cascade"
                if d > 0 else "**Lumiere's claim is contradicted at this budget**: the cascade got more periodic "
                "clips right than STUNet")
        text = f"{head} ({stats})."
    else:
        lead = ("neither got more periodic clips right" if d == 0 else
                f"{'STUNet' if d > 0 else 'the cascade'} got {abs(d):.1f} pts more periodic clips right, a difference "
                "this sample cannot tell from chance")
        text = f"**Lumiere's claim is not supported at this budget**: {lead} ({stats})."
    if p.get("rate_error_points") is not None:
        e, (elo, ehi) = p["rate_error_points"], p["rate_error_ci95"]
        if elo > 0 or ehi < 0:
            text += (f" The {'STUNet' if e > 0 else 'cascade'}'s rates were closer to the prompts': mean rate error "
                     f"{abs(e):.1f} pts lower (interval {min(abs(elo), abs(ehi)):.1f} to {max(abs(elo), abs(ehi)):.1f}).")
    ref = paired(result.get("rows") or [], "reference", "cascade")
    if ref:
        ov = result.get("overall", {})
        text += (f" Outside the verdict, the reference STUNet (its own, larger budget) got "
                 f"{_f(ov.get('reference', {}).get('right_pct'), '.0f')} % of periodic clips right against the cascade's "
                 f"{_f(ov.get('cascade', {}).get('right_pct'), '.0f')} % (paired, {ref['right_points']:+.1f} pts, "
                 f"McNemar p = {ref['p']:.2g}).")
    return text


def aggregate(rows: Sequence[dict], interval: int = KEYFRAME_STRIDE) -> dict:
    """Aggregates of per-clip rows (``score``'s, with ``model``).

    Returns ``models`` (present, in ``MODELS`` order); ``sanity`` per model: clips, colour / shape / coherence
    % over all clips, linear motion % over the linear prompts, and ``bar`` (colour, shape and linear motion
    >= ``SANITY_BAR``); ``sanity_bar``: the threshold and whether the cascade ``holds`` it (None without
    cascade rows); ``periodic``: per motion x speed (x shape for spins) its period, cycles per keyframe
    interval and per model n, measurable, right_pct, mean / max rate error, reversed, plus ``better``
    (STUNet against the cascade); ``by_cycles`` per model: [cycles per keyframe, mean rate error, measurable
    clips, right %] per distinct rate, and ``by_motion_cycles`` the same per model and periodic motion (the
    plot's lines); ``overall`` per model over all periodic clips; ``paired``: STUNet against the cascade on the
    same clips, with a bootstrap interval and McNemar's p (``paired``), overall and ``paired_by_motion``.
    """
    rows = list(rows)
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    models += sorted({r["model"] for r in rows} - set(models))
    sanity = {}
    for m in models:
        mine = [r for r in rows if r["model"] == m]
        lin = [r for r in mine if r.get("linear")]
        d = {"clips": len(mine), "color": _pct([r["color_ok"] for r in mine]),
             "shape": _pct([r["shape_ok"] for r in mine]), "linear_motion": _pct([r["motion_ok"] for r in lin]),
             "linear_clips": len(lin), "coherence": _pct([r["coherent"] for r in mine])}
        d["bar"] = all(math.isfinite(d[k]) and d[k] >= SANITY_BAR for k in SANITY_METRICS)
        sanity[m] = d
    per = [r for r in rows if r.get("periodic")]
    groups: dict[tuple, list[dict]] = {}
    for r in per:
        groups.setdefault(_row_key(r), []).append(r)
    order = {m: i for i, m in enumerate(periodic.PERIODIC_MOTIONS)}
    table = []
    for key in sorted(groups, key=lambda k: (order.get(k[0], 9), SPEED_ORDER.get(k[1], 9), k[2])):
        g = groups[key]
        spec = world.parse_caption(g[0]["prompt"])
        stats = {m: _periodic_stats([r for r in g if r["model"] == m]) for m in models
                 if any(r["model"] == m for r in g)}
        table.append({"motion": key[0], "speed": key[1], "shape": key[2], "period": float(spec.period),
                      "cycles_per_keyframe": float(g[0]["cycles_per_keyframe"]), "models": stats,
                      "better": _better(stats.get("stunet"), stats.get("cascade"))})
    def points(rs: list[dict]) -> list[list]:
        pts: dict[float, list[dict]] = {}
        for r in rs:
            pts.setdefault(round(float(r["cycles_per_keyframe"]), 6), []).append(r)
        return [[c, st["mean_rate_error"], st["measurable"], st["right_pct"]]
                for c, st in ((c, _periodic_stats(g)) for c, g in sorted(pts.items()))]

    by_cycles = {m: points([r for r in per if r["model"] == m]) for m in models}
    by_motion = {m: {mo: points([r for r in per if r["model"] == m and r["motion"] == mo])
                     for mo in periodic.PERIODIC_MOTIONS if any(r["model"] == m and r["motion"] == mo for r in per)}
                 for m in models}
    overall = {m: _periodic_stats([r for r in per if r["model"] == m]) for m in models}
    holds = sanity["cascade"]["bar"] if "cascade" in sanity else None
    return metrics._jsonable({
        "models": models, "sanity": sanity, "sanity_bar": {"threshold": SANITY_BAR, "metrics": list(SANITY_METRICS),
                                                           "model": "cascade", "holds": holds},
        "periodic": table, "by_cycles": by_cycles, "by_motion_cycles": by_motion, "overall": overall,
        "better_overall": _better(overall.get("stunet"), overall.get("cascade")),
        "paired": paired(per), "paired_by_motion": {mo: paired([r for r in per if r["motion"] == mo])
                                                    for mo in periodic.PERIODIC_MOTIONS
                                                    if any(r["motion"] == mo for r in per)},
        "keyframe_interval": interval, "nyquist_cycles": NYQUIST, "rate_tolerance": RATE_TOLERANCE})


# ----------------------------------------------------------------------------- report
def _f(v, spec: str = ".1f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def _err(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def better_text(b: dict | None) -> str:
    """A ``better`` verdict in words: who wins and by how much."""
    if not b:
        return "-"
    dr, de = b["right_points"], b.get("rate_error_points")
    if b["winner"] == "tie":
        return "tie"
    name = SHORT[b["winner"]]
    sign = 1 if b["winner"] == "stunet" else -1
    parts = []
    if dr is not None and abs(dr) >= 0.5:
        parts.append(f"+{sign * dr:.0f} pts right")
    if de is not None and abs(de) >= 0.5:
        parts.append(f"{sign * de:.0f} pts less rate error" if sign * de > 0 else f"{-sign * de:.0f} pts more rate error")
    if not parts and (de is None or not math.isfinite(de)):
        parts.append(f"{'the cascade' if b['winner'] == 'stunet' else 'STUNet'} not measurable")
    return f"{name} ({', '.join(parts)})" if parts else name


def sanity_text(result: dict) -> str:
    """One sentence: does the cascade reach the sanity bar (colour, shape, linear motion >= 90 %)?"""
    s = result["sanity"].get("cascade")
    if s is None:
        return "Sanity bar: no cascade clips."
    got = ", ".join(f"{n} {_f(s[k], '.0f')} %" for k, n in
                    (("color", "colour"), ("shape", "shape"), ("linear_motion", "linear motion")))
    if result["sanity_bar"]["holds"]:
        return (f"Sanity bar **holds**: the cascade reaches {got} (>= {SANITY_BAR:.0f} % each), so its periodic "
                "errors are not a broken model's.")
    return (f"Sanity bar **does not hold**: the cascade reaches only {got} (needs >= {SANITY_BAR:.0f} % each), so "
            "the comparison is unfair to it.")


def format_table(result: dict) -> str:
    """The markdown report: sanity bar, then per periodic motion and speed which model is better and by how much."""
    models = [m for m in result["models"]]
    lines = ["# STUNet vs keyframe cascade (issue 18)", "", claim_text(result), "", sanity_text(result), "",
             "| model | clips | colour % | shape % | linear motion % | coherence % | bar |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for m in models:
        s = result["sanity"][m]
        lines.append(f"| {LABELS.get(m, m)} | {s['clips']} | {_f(s['color'])} | {_f(s['shape'])} | "
                     f"{_f(s['linear_motion'])} | {_f(s['coherence'])} | {'yes' if s['bar'] else 'no'} |")
    shown = [m for m in ("stunet", "reference", "cascade", "oracle") if m in models]
    head = ["periodic", "speed", "shape", "period", "cycles / keyframe", "clips"]
    head += [f"{SHORT[m]} right %" for m in shown] + [f"{SHORT[m]} rate err %" for m in shown]
    head += ["reversed " + " / ".join(SHORT[m] for m in shown), "better"]
    if result["periodic"]:
        lines += ["", "| " + " | ".join(head) + " |", "|---|---|---|" + "---:|" * (len(head) - 4) + "---|"]
    else:
        lines += ["", "No periodic prompts in this set: nothing to time (the sanity bar above is all it measures)."]

    def cells(stats: dict, n_label: str) -> list[str]:
        out = [n_label]
        out += [_f(stats[m]["right_pct"]) if m in stats else "-" for m in shown]
        out += [_err(stats[m]["mean_rate_error"]) if m in stats else "-" for m in shown]
        out += [" / ".join(str(stats[m]["reversed"]) if m in stats else "-" for m in shown)]
        return out

    for r in result["periodic"]:
        n = next(iter(r["models"].values()))["n"]
        row = [r["motion"], r["speed"], r["shape"], _f(r["period"]), _f(r["cycles_per_keyframe"], ".2f")]
        row += cells(r["models"], str(n)) + [better_text(r["better"])]
        lines.append("| " + " | ".join(row) + " |")
    ov = result["overall"]
    if result["periodic"]:
        n = ov[shown[0]]["n"] if shown else 0
        lines.append("| " + " | ".join(["all", "", "", "", ""] + cells(ov, str(n))
                                       + [better_text(result.get("better_overall"))]) + " |")
    lines.append("")
    b = result.get("better_overall")
    if b:
        wins = {"stunet": 0, "cascade": 0, "tie": 0}
        for r in result["periodic"]:
            if r["better"]:
                wins[r["better"]["winner"]] += 1
        lines.append(f"Overall on periodic motion: **{better_text(b)}**; STUNet better in {wins['stunet']} rows, "
                     f"the cascade in {wins['cascade']}, tied in {wins['tie']}.")
        fast = [r for r in result["periodic"] if r["cycles_per_keyframe"] >= NYQUIST - 1e-9]
        if fast:
            lines.append("At or past the keyframes' Nyquist limit (" + "; ".join(
                f"{r['motion']} {r['speed']}{'' if r['shape'] == 'any' else ' ' + r['shape']}: {better_text(r['better'])}"
                for r in fast) + ").")
    if result.get("paired"):
        lines += ["", paired_text(result["paired"])]
        for motion, pm in (result.get("paired_by_motion") or {}).items():
            if pm:
                lo, hi = pm["ci95"]
                lines.append(f"* {motion}: {pm['right_points']:+.1f} pts right over {pm['pairs']} pairs (interval "
                             f"{lo:+.1f} to {hi:+.1f}, McNemar p = {pm['p']:.3g})")
    s = result["settings"]
    lines += ["", f"{s['prompts']} prompts x {len(s['seeds'])} seeds, {s['frames']} frames, keyframes at "
              f"{', '.join(map(str, s['keyframes']))}. Right = the prompt's sense and a period within x{RATE_TOLERANCE:g} "
              f"of the world's; rate err = mean |measured / prompted rate - 1| over the measurable clips; reversed = "
              f"the opposite sense (counted apart). Cycles / keyframe: the motion's cycles per {s['keyframe_interval']} "
              f"frames (from the world's true speeds); at {NYQUIST:g} and above, keyframes alias it. Better: more clips "
              "right, else a lower rate error. The oracle is the cascade's TSR stage on the world's true keyframes: "
              "its errors are interpolation, the cascade's beyond them keyframe generation and aliasing."]
    return "\n".join(lines)


PLOT_CAPTION = ("Mean relative rate error of spins, orbits and bounces against how fast the motion is per keyframe "
                "interval. Past the dashed Nyquist line (0.5 cycles per interval) keyframes every 4th frame cannot "
                "represent the motion on their own; Lumiere's claim predicts the cascade's error rising there and "
                "STUNet's, which makes every frame at once, not. What was measured:")


MOTION_MARKERS = {"spinning": "o", "orbiting": "s", "bouncing": "^"}


def rate_error_figure(result: dict):
    """The matplotlib figure of ``plot_rate_error`` (Agg): mean relative rate error (%) against cycles per
    keyframe interval, the keyframes' Nyquist limit (``NYQUIST``) a vertical dashed line. One colour per model
    and, where the result has ``by_motion_cycles``, one line per model and periodic motion (its marker: the
    motions differ in difficulty, so one line through all of them would zig-zag between motions, not rates);
    else one line per model through ``by_cycles``."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    style = {"stunet": dict(color="#1f77b4"), "cascade": dict(color="#d62728"),
             "oracle": dict(color="#ff7f0e", linestyle="--"), "reference": dict(color="#6baed6", linestyle="-."),
             "world": dict(color="#7f7f7f", linestyle=":")}
    fig = Figure(figsize=(8.8, 4.4), dpi=100)
    ax = fig.subplots()
    top, right = 0.0, 0.0
    by_motion = result.get("by_motion_cycles")
    motions_seen = []
    for m in result["models"]:
        lines = by_motion.get(m, {}) if by_motion else {None: result["by_cycles"].get(m, [])}
        drawn = False
        for motion, pts in lines.items():
            pts = [(c, e) for c, e, *_ in pts if e is not None]
            if not pts:
                continue
            x, y = zip(*pts)
            y = [100 * v for v in y]
            top, right = max(top, max(y)), max(right, max(x))
            ax.plot(x, y, marker=MOTION_MARKERS.get(motion, "o"), label="_" + str(motion), **style.get(m, {}))
            drawn = True
            if motion and motion not in motions_seen:
                motions_seen.append(motion)
        if drawn:
            ax.plot([], [], label=LABELS.get(m, m), **style.get(m, {}))              # the model's legend entry
    for motion in motions_seen:
        ax.plot([], [], color="black", linestyle="none", marker=MOTION_MARKERS[motion], label=motion)
    ax.axvline(NYQUIST, color="black", linestyle="--", linewidth=1.2,
               label=f"keyframe Nyquist limit ({NYQUIST:g} cycles / interval)")
    ax.set_xlabel(f"motion rate, cycles per keyframe interval ({result.get('keyframe_interval', KEYFRAME_STRIDE)} "
                  "frames)")
    ax.set_ylabel("mean relative rate error (%)")
    ax.set_xlim(0, max(0.75, right + 0.05))
    ax.set_ylim(0, max(10.0, top * 1.1))
    ax.set_title("STUNet vs keyframe cascade: periodic motion")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.tight_layout()
    return fig


def plot_rate_error(result: dict, path: str | Path) -> Path:
    """``rate_error.png`` (see ``rate_error_figure``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate_error_figure(result).savefig(path)
    return path


def write_outputs(result: dict, out: str | Path) -> dict[str, Path]:
    """results.json, table.md and rate_error.png in ``out``; returns their paths by name."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = {k: v for k, v in result.items() if k != "videos"}
    paths = {"json": out / "results.json", "table": out / "table.md", "plot": out / "rate_error.png"}
    paths["json"].write_text(json.dumps(data, indent=1))
    paths["table"].write_text(format_table(result) + "\n")
    plot_rate_error(result, paths["plot"])
    return paths


# ----------------------------------------------------------------------------- pictures (the studio)
KEYFRAME_RGB = (255, 170, 0)         # keyframe marks: an amber border / tick


def mark_keyframes(video: np.ndarray, keyframes: Sequence[int], width: int = 1, rgb=KEYFRAME_RGB) -> np.ndarray:
    """A copy of the clip (t h w 3) with a coloured border on the keyframes."""
    v = np.array(video, copy=True)
    for k in keyframes:
        if 0 <= k < len(v):
            v[k, :width], v[k, -width:], v[k, :, :width], v[k, :, -width:] = rgb, rgb, rgb, rgb
    return v


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 2, fill: int = 64) -> np.ndarray:
    """Two clips of the same length as one (t h (w1 + gap + w2) 3): played together, always in sync."""
    if len(left) != len(right):
        raise ValueError(f"clips of {len(left)} and {len(right)} frames")
    h = max(left.shape[1], right.shape[1])
    t = len(left)
    out = np.full((t, h, left.shape[2] + gap + right.shape[2], 3), fill, np.uint8)
    out[:, :left.shape[1], :left.shape[2]] = left
    out[:, :right.shape[1], left.shape[2] + gap:] = right
    return out


def object_row(video: np.ndarray) -> int:
    """The image row through the object: the median of its centre's row over the frames (the middle row if none)."""
    fm = metrics.measure_frames(np.asarray(video))
    y = fm.y[np.isfinite(fm.y)]
    h = video.shape[1]
    return int(np.clip(round(float(np.median(y))), 0, h - 1)) if len(y) else h // 2


def xt_pair(left: np.ndarray, right: np.ndarray, keyframes: Sequence[int], rows: tuple[int, int] | None = None,
            scale: int = 8, gap: int = 12, tick: int = 6) -> tuple[np.ndarray, tuple[int, int]]:
    """X-T slices (time runs down) of two clips through each one's object row, side by side, upscaled; the right
    one's keyframe rows get ticks (``KEYFRAME_RGB``) in the margins either side. Returns (image, rows used)."""
    from ..analysis import xt_slice
    rows = rows or (object_row(left), object_row(right))
    a = xt_slice(left, rows[0]).repeat(scale, 0).repeat(scale, 1)
    b = xt_slice(right, rows[1]).repeat(scale, 0).repeat(scale, 1)
    h = max(len(a), len(b))
    out = np.full((h, a.shape[1] + gap + tick + b.shape[1] + tick, 3), 32, np.uint8)
    out[:len(a), :a.shape[1]] = a
    x0 = a.shape[1] + gap + tick
    out[:len(b), x0:x0 + b.shape[1]] = b
    for k in keyframes:
        if 0 <= k < len(right):
            y0, y1 = k * scale, (k + 1) * scale
            out[y0:y1, x0 - tick:x0] = KEYFRAME_RGB
            out[y0:y1, x0 + b.shape[1]:x0 + b.shape[1] + tick] = KEYFRAME_RGB
    return out, rows


# ----------------------------------------------------------------------------- loading
def equal_budget_stunet(cascade_dir: str | Path) -> Path | None:
    """The STUNet a cascade folder ships as its equal-budget counterpart (``DIR/equal-budget-stunet``), or None."""
    d = Path(cascade_dir) / EQUAL_BUDGET_STUNET
    return d if (d / "config.json").is_file() else None


def _model_type(directory: str | Path) -> str:
    try:
        return str(json.loads((Path(directory) / "config.json").read_text()).get("model_type") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def _check_dir(flag: str, directory) -> Path:
    d = Path(directory)
    if not d.is_dir():
        raise ValueError(f"{flag}: no such directory: {d}")
    if not (d / "config.json").is_file():
        raise ValueError(f"{flag}: {d} is not a checkpoint (it has no config.json)")
    return d


def load_cascade(directory: str | Path, precision=None):
    """A keyframe cascade checkpoint (``stunet.cascade.load_pipeline``); ValueError if it is not one."""
    d = _check_dir("--cascade", directory)
    try:
        from ..cascade import CascadePipeline, load_pipeline
    except ImportError:
        raise ValueError("this stunet has no keyframe cascade (stunet.cascade is missing), so --cascade "
                         "cannot be loaded") from None
    pipe = load_pipeline(d, precision=precision)
    if not isinstance(pipe, CascadePipeline):
        raise ValueError(f"--cascade: {d} is not a keyframe cascade (its config.json says model_type "
                         f"{_model_type(d) or 'none'!r}); pass the folder `stunet train-cascade` wrote")
    return pipe


def load_stunet(directory: str | Path, precision=None, flag: str = "--stunet"):
    """A STUNet checkpoint as a ``Pipeline``; ValueError for a missing folder or a cascade."""
    from ..pipeline import Pipeline
    d = _check_dir(flag, directory)
    if "cascade" in _model_type(d).lower():
        raise ValueError(f"{flag}: {d} is a keyframe cascade; pass a STUNet checkpoint (e.g. assets/stunet-shapes)")
    return Pipeline.from_pretrained(d, precision=precision)


# ----------------------------------------------------------------------------- command line
def parse_args(argv=None):
    import argparse

    from ..defaults import PRECISIONS
    p = argparse.ArgumentParser(prog="stunet compare", description="STUNet against a keyframe cascade on periodic "
                                "motion (issue 18): writes results.json, table.md and rate_error.png.")
    p.add_argument("--stunet", required=True, help="STUNet checkpoint directory")
    p.add_argument("--cascade", required=True, help="keyframe cascade checkpoint directory")
    p.add_argument("--reference", help="a second STUNet checkpoint reported beside them, outside the verdict "
                   "(e.g. the shipped model, trained on a larger budget)")
    p.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help=f"seeds per prompt (default {DEFAULT_SEEDS})")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="compute precision (default: $STUNET_PRECISION, else auto)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--prompts", help="file with one shapes-world caption per line (default: the fixed set)")
    g.add_argument("--quick", action="store_true", help="the smaller prompt set (14 prompts)")
    p.add_argument("--batch", type=int, default=8, help="clips per sampling batch")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (default: each model's own)")
    p.add_argument("--no-oracle", action="store_true", help="skip the oracle control (TSR on true keyframes)")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p.parse_args(argv)


def main(argv=None) -> int:
    import sys
    args = parse_args(argv)
    try:
        if args.prompts:
            from .evaluate import load_prompts
            prompts = load_prompts(args.prompts)
        else:
            prompts = compare_prompts(quick=args.quick)
        if args.seeds < 1 or args.batch < 1 or (args.steps is not None and args.steps < 1):
            raise ValueError("--seeds, --batch and --steps must be >= 1")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out: {out} exists and is not a folder")
        _check_dir("--stunet", args.stunet)
        _check_dir("--cascade", args.cascade)
        cascade = load_cascade(args.cascade, args.precision)
        stunet = load_stunet(args.stunet, args.precision)
        reference = load_stunet(args.reference, args.precision, flag="--reference") if args.reference else None
        log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
        result = run(stunet, cascade, prompts, args.seeds, batch_size=args.batch, steps=args.steps,
                     oracle=not args.no_oracle, reference=reference, progress=log)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    result["settings"].update(stunet_dir=str(args.stunet), cascade_dir=str(args.cascade),
                              reference_dir=str(args.reference) if args.reference else None)
    paths = write_outputs(result, args.out)
    print(format_table(result))
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}", file=sys.stderr)
    return 0
