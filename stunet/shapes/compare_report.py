"""``stunet compare``, the report: the markdown table and the verdict on Lumiere's claim, in words,
from ``compare_scores.run`` / ``aggregate``'s result."""
from __future__ import annotations

import math

from .compare_scores import LABELS, SANITY_BAR, SHORT, paired
from .periodic import NYQUIST, RATE_TOLERANCE
from .stats import SIGNIFICANCE


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
