"""``stunet compare``, the measurement: generate every (prompt, seed) with STUNet, the keyframe cascade
and the oracle control, score the clips, and aggregate them (``run``, ``aggregate``).

The report text is ``compare_report``, the figures ``compare_figures``; ``compare`` is the command
and the module the rest of stunet imports (it re-exports all three).
"""
from __future__ import annotations

import math
import time
from typing import Callable, Sequence

import numpy as np

from . import metrics, periodic, world
from .periodic import KEYFRAME_STRIDE, NYQUIST, RATE_TOLERANCE, SPEED_NAMES
from .prompts import ORACLE_OFFSET, batch_generator, compare_prompts, seed_list, world_seed
from .stats import BOOTSTRAP_SEED, bootstrap_mean_ci, mcnemar_p

MODELS = ("stunet", "reference", "cascade", "oracle", "world")
LABELS = {"stunet": "STUNet", "reference": "reference STUNet (its own budget)", "cascade": "cascade",
          "oracle": "oracle (TSR on true keyframes)", "world": "world (true clips)"}
SHORT = {"stunet": "STUNet", "reference": "reference", "cascade": "cascade", "oracle": "oracle", "world": "world"}
SANITY_BAR = 90.0             # % colour, shape and linear motion the cascade must reach for a fair comparison
SANITY_METRICS = ("color", "shape", "linear_motion")
DEFAULT_SEEDS = 3
CLIP_FRAMES = 32              # the cascade's clip: 8 keyframes at stride 4
SPEED_ORDER = {"slow": 0, "normal": 1, "quick": 2}


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
    seeds = seed_list(seeds)
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
            v = _check_videos(model.sample_batch(texts, generator=batch_generator(first_seed, start), frames=frames, **kw),
                              len(chunk), frames, who)
            clips[name] += [(i, p, s, x) for (i, p, s), x in zip(chunk, v)]
            seconds[name] += time.perf_counter() - t0
        t1 = time.perf_counter()
        c = _check_videos(cascade.sample_batch(texts, generator=batch_generator(first_seed, start), **kw),
                          len(chunk), frames, "the cascade")
        clips["cascade"] += [(i, p, s, x) for (i, p, s), x in zip(chunk, c)]
        t2 = time.perf_counter()
        seconds["cascade"] += t2 - t1
        if oracle:
            size = c.shape[2]
            true = [true_clip(p, i, s, size, frames) for i, p, s in chunk]
            keys = np.stack([t[kf] for t in true])
            o = _check_videos(cascade.fill(texts, keys, generator=batch_generator(first_seed, start, ORACLE_OFFSET), **kw),
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
    out = {"models": [a, b], "pairs": len(keys), "only_a": int(((x == 1) & (y == 0)).sum()),
           "only_b": int(((x == 0) & (y == 1)).sum()), "right_points": float(100.0 * (x - y).mean()),
           "ci95": list(bootstrap_mean_ci(100.0 * (x - y), rng))}
    out["p"] = mcnemar_p(out["only_a"], out["only_b"])
    both = [k for k in keys if ra[k].get("rate_error") is not None and rb[k].get("rate_error") is not None]
    out["rate_error_pairs"] = len(both)
    out["rate_error_points"] = out["rate_error_ci95"] = None
    if both:
        d = 100.0 * np.array([rb[k]["rate_error"] - ra[k]["rate_error"] for k in both])
        out["rate_error_points"] = float(d.mean())
        out["rate_error_ci95"] = list(bootstrap_mean_ci(d, rng))
    return out


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
