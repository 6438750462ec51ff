"""Targets (checked and printed as met / NOT met, never used to tune anything) and the markdown report."""
from __future__ import annotations

from dataclasses import dataclass

from .baselines import model_configs
from .measure import MMAP_THRESHOLD
from .results import (Results, clip_seconds, exponent, flop_cell, flop_ratio, gflops, inspect_overhead,
                      lever_rows, local_exponent, matmul_fraction, matmul_gflops, med, peak_mib, speedup,
                      step_time, steps_seconds, tensor_mib, within_parity)

# The prototype, quoted for comparison (not measured here).
PROTOTYPE = ("1.5 M-parameter prototype at 32x32, bf16, batch 2: 128 ms per step at 32 frames; "
             "1.8x faster than its VDM-style twin at 16 to 64 frames, 2.2x at 128")

# Targets: the speed-up over the VDM-style
# twin is judged against the two designs' FLOP ratio (efficiency parity), not a fixed factor.
T_PARITY = 0.10
T_SPEEDUP_UNET3D = 4.0
T_INSPECT_OVERHEAD = 0.10
T_EXPONENT = 1.05


# ============================================================================ targets
@dataclass
class Target:
    name: str
    measured: str
    status: str            # "met", "NOT met", "not measured"


def _status(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "NOT met")


def _x(v):
    return "-" if v is None else f"{v:.2f}x"


def targets(res: Results) -> list[Target]:
    a, b = res.names
    frames = sorted(res.opts.frames)
    out = []
    for p in res.precisions:
        par = [(t, speedup(res, t, b, p), flop_ratio(res, t)) for t in frames]
        par = [(t, s, r) for t, s, r in par if s is not None and r is not None]
        out.append(Target(
            f"{p}: speed-up of `{a}` over `{b}` at least their FLOP ratio (`{b}` GFLOP / `{a}` GFLOP) less "
            f"{T_PARITY:.0%}, at every frame count (efficiency parity or better)",
            ", ".join(f"{t}: {s:.2f}x vs {r:.2f}x ({s / r - 1:+.0%})" for t, s, r in par) or "-",
            _status(None if not par else all(within_parity(s, r, T_PARITY) for _, s, r in par))))
        mem = [(t, peak_mib(res, a, t, p), peak_mib(res, b, t, p), tensor_mib(res, a, t, p),
                tensor_mib(res, b, t, p)) for t in frames]
        mem = [m for m in mem if None not in m]
        out.append(Target(
            f"{p}: `{a}` lower peak memory per step than `{b}` (RSS and live tensors, every frame count)",
            ", ".join(f"{t}: {ra:.0f} vs {rb:.0f} MiB RSS, {ta:.0f} vs {tb:.0f} MiB tensors"
                      for t, ra, rb, ta, tb in mem) or "-",
            _status(None if not mem else all(ra < rb and ta < tb for _, ra, rb, ta, tb in mem))))
        for layout in res.unet3d:
            for t in res.opts.unet3d_frames:
                s = speedup(res, t, f"unet3d-{layout}", p)
                out.append(Target(
                    f"{p}: `{a}` >= {T_SPEEDUP_UNET3D:g}x faster per step than `UNet3DConditionModel` ({layout} "
                    f"layout, {res.params[f'unet3d-{layout}'] / 1e6:.2f} M parameters against "
                    f"{res.params[a] / 1e6:.2f} M) at {t} frames",
                    _x(s), _status(None if s is None else s >= T_SPEEDUP_UNET3D)))
        e = exponent(res, a, p)
        out.append(Target(f"{p}: `{a}` time per step grows no faster than linearly in frames (fitted exponent "
                          f"<= {T_EXPONENT:g})", "-" if e is None else f"{e:.2f}",
                          _status(None if e is None else e <= T_EXPONENT)))
    ov = inspect_overhead(res)
    out.append(Target(f"{res.chosen}: inspection overhead <= {T_INSPECT_OVERHEAD:.0%}",
                      "-" if ov is None else f"{ov:+.1%}", _status(None if ov is None else ov <= T_INSPECT_OVERHEAD)))
    return out


# ============================================================================ markdown
def _f(v, fmt="{:.1f}"):
    return "-" if v is None else fmt.format(v)


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table; a "|" inside a cell (an error message) is escaped."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _flop_split(by_op: dict[str, int]) -> str:
    tot = sum(by_op.values()) or 1
    conv = sum(v for k, v in by_op.items() if "conv" in k)
    attn = sum(v for k, v in by_op.items() if "attention" in k)
    mm = tot - conv - attn
    return f"conv {conv / tot:.0%} / linear {mm / tot:.0%} / attention {attn / tot:.0%}"


def _prec_label(p: str) -> str:
    return "bf16 autocast" if p == "bf16" else "fp32"


def _header(res: Results, cfg_a) -> list[str]:
    o, m = res.opts, res.machine
    a, b = res.names
    mem_method = " / ".join(sorted({c["memory_method"] for c in res.cells.values() if "memory_method" in c})) \
        or "-"
    where = "in a fresh process per model, frame count and precision" if o.isolate else \
        "in this process (--in-process: less clean)"
    parts = ["# STUNet benchmark\n"]
    if o.quick:
        parts.append("> **Quick (smoke) run**: few frames and repeats; not the reference numbers.\n")
    busy = max(m.get("load_start") or 0, m.get("load_end") or 0)
    if busy > 0.5:
        parts.append(f"> **The CPU was not idle** (1-minute load average {m.get('load_start') or 0:.2f} at the "
                     f"start, {m.get('load_end') or 0:.2f} at the end, on {m['cpus']} CPUs): timings are disturbed "
                     f"by other processes.\n")
    verdict = res.verdict or {}
    parts.append(
        f"- command: `{res.command}`\n"
        f"- date: {res.started}; the run took {res.seconds:.0f} s\n"
        f"- machine: {m['cpu_model']}, {m['cpus']} CPUs ({m['cores']}); {m['platform']}\n"
        f"- software: Python {m['python']}, torch {m['torch']}, diffusers {m['diffusers']}; "
        f"{res.threads} torch thread(s)\n"
        f"- precision: `--precision {o.precision}`: timed in {', '.join(res.precisions)}; single-precision "
        f"measurements (steps sweep, levers, inspection) in {res.chosen}. CPU capability "
        f"(`torch.backends.cpu.get_cpu_capability()`): {res.cpu_capability}. The probe's verdict "
        f"(`stunet.precision.resolve(\"auto\")`): **{verdict.get('precision', '-')}**, "
        f"{verdict.get('reason', 'not measured')}\n"
        f"- step: one forward on batch {o.batch} (classifier-free guidance: conditional + unconditional rows), "
        f"{cfg_a.height}x{cfg_a.width}, fp32 or bf16 autocast, `torch.no_grad()`; text encoded outside the step\n"
        f"- time: median of {o.repeats} steps after {o.warmup} warm-up; the models (and precisions) of one frame "
        f"count are built in one {'fresh process' if o.isolate else 'process'} and timed round-robin (order "
        f"reversed every other round), so a drift of the machine's speed hits them alike\n"
        f"- peak memory, {where}, above the baseline with the model and inputs built: **RSS**, the resident "
        f"set's high-water mark over {o.mem_steps} steps from cold ({mem_method}; glibc mmap threshold fixed at "
        f"{MMAP_THRESHOLD // 1024} KiB so freed tensors return to the OS); **tensors**, the most tensor storage "
        f"alive at once during a step (a dispatch-mode tracker: deterministic, but blind to kernels' internal "
        f"buffers)\n"
        f"- FLOPs: `torch.utils.flop_counter.FlopCounterMode` on one step (2 per multiply-add: convolutions, "
        f"matrix products and scaled-dot-product attention, CPU flash attention included); GFLOP/s = FLOP / "
        f"median time\n"
        f"- parameters: `{a}` {res.params[a]:,}, `{b}` {res.params[b]:,}"
        + "".join(f", `UNet3DConditionModel` ({k} layout) {v['params']:,}" for k, v in res.unet3d.items()) + "\n")
    return parts


def _clip_sections(res: Results) -> list[str]:
    o = res.opts
    parts = ["## Default clip, end to end\n"]
    if not o.clip:
        return parts + ["not measured (--no-clip)\n"]
    c = next((c for c in res.clips.values() if "settings" in c), None)
    try:
        from stunet.defaults import STEPS
    except ImportError:                       # pragma: no cover - older stunet
        STEPS = None
    if c:
        s = c["settings"]
        where = f"{o.model_dir!r}, " if o.model_dir else ""
        parts.append(f"`stunet.pipeline.Pipeline.from_pretrained({where}precision=...)` "
                     f"({'the shipped model' if not o.model_dir else 'model ' + o.model_dir}, {c['height']}x"
                     f"{c['width']}, window {c['window']} frames) generating `Settings({s['prompt']!r})`: "
                     f"**{s['steps']} steps** ("
                     f"{'overridden: ' + repr(o.clip_overrides) if o.clip_overrides else 'the `Settings` default'}; "
                     f"`stunet.defaults.STEPS` = {STEPS}), "
                     f"{s['sampler']}, guidance {s['guidance']:g}, {s['frames']} frames, seed {s['seed']}. "
                     f"Median of {o.clip_repeats} clips after {o.clip_warmup} warm-up, "
                     f"{'in a fresh process per precision' if o.isolate else 'in this process'}; model loading "
                     f"not included.\n")
    rows = []
    for p in res.precisions:
        cell = res.clips.get(p) or {}
        sec = clip_seconds(res, p)
        n = (cell.get("steps") or {}).get("default")
        rows.append([p, _f(sec, "{:.2f}"), _f(sec and n and sec * 1e3 / n),
                     " / ".join(f"{x:.2f}" for x in (cell.get("times") or {}).get("default", [])) or "-",
                     cell.get("error", "")])
    parts.append(_table(["precision", "s/clip", "ms/step", "clips (s)", "error"], rows) + "\n")

    parts.append(f"## Default clip against denoising steps ({res.chosen})\n")
    sweep = steps_seconds(res)
    if sweep:
        parts.append(f"The same clip at other step counts, round-robin in one process (median of "
                     f"{o.steps_repeats} after {o.clip_warmup} warm-up). Time only: what fewer steps cost in "
                     f"quality is measured with `stunet eval`.\n")
        parts.append(_table(["steps", "s/clip", "ms/step"],
                            [[str(n), f"{s:.2f}", f"{s * 1e3 / n:.1f}"] for n, s in sweep]) + "\n")
    else:
        parts.append(f"not measured{': ' + res.steps['error'] if res.steps and 'error' in res.steps else ''}\n")
    return parts


def _lever_section(res: Results, cfg_a) -> list[str]:
    o = res.opts
    parts = [f"## Levers ({res.chosen})\n"]
    rows = lever_rows(res)
    if not rows:
        err = res.levers.get("error") if res.levers else None
        return parts + [f"not measured{': ' + err if err else ''}\n"]
    from .levers import LEVERS
    desc = {lv.name: lv.description for lv in LEVERS}
    parts.append(f"One denoising step of `{o.preset}` ({o.lever_frames or cfg_a.frames} frames, batch {o.batch}), "
                 f"without and with each lever, all built alike and timed round-robin in one process (median of "
                 f"{o.repeats} after {o.warmup} warm-up). first step = turning the lever on plus its first step "
                 f"(a compilation shows here). Levers are registered in `benchmarks/levers.py` (`LEVERS`).\n")
    parts.append(_table(["lever", "ms/step without", "ms/step with", "speed-up", "first step with (s)", "what"],
                        [[f"`{r.name}`", _f(r.without_s and r.without_s * 1e3), _f(r.with_s and r.with_s * 1e3),
                          _x(r.speedup), _f(r.first_with_s, "{:.2f}"),
                          desc.get(r.name, "") if not r.error else f"failed: {r.error}"] for r in rows]) + "\n")
    return parts


def render(res: Results) -> str:
    o = res.opts
    a, b = res.names
    cfg_a, _ = model_configs(o.preset, o.baseline, o.overrides)
    parts = _header(res, cfg_a)
    sweep = sorted(set(o.frames) | set(o.unet3d_frames))
    labels = [a, b] + [f"unet3d-{k}" for k in res.unet3d]
    errors = [f"`{n}` at {t} frames, {p}: {c['error']}" for p in res.precisions for t in sweep for n in labels
              if (c := res.cells.get((n, t, p))) and c.get("error")]

    parts += _clip_sections(res)
    parts += _lever_section(res, cfg_a)

    for p in res.precisions:
        # --- time per step
        parts.append(f"## Time per denoising step: `{a}` against `{b}` ({p})\n")
        parts.append(f"FLOP ratio = `{b}` GFLOP / `{a}` GFLOP per step (what the speed-up would be at equal "
                     f"efficiency); speed-up = `{b}` time / `{a}` time; exponent = growth of the time per step since "
                     f"the previous row, log(time ratio) / log(frames ratio) (1 = linear).\n")
        rows, prev = [], None
        for t in sweep:
            ta, tb = step_time(res, a, t, p), step_time(res, b, t, p)
            la, lb = local_exponent(prev, (t, ta, tb), 1), local_exponent(prev, (t, ta, tb), 2)
            prev = (t, ta, tb)
            rows.append([str(t), _f(ta and ta * 1e3), _f(ta and ta * 1e3 / t, "{:.2f}"), _f(la, "{:.2f}"),
                         _f(tb and tb * 1e3), _f(tb and tb * 1e3 / t, "{:.2f}"), _f(lb, "{:.2f}"),
                         _x(flop_ratio(res, t)), _x(speedup(res, t, b, p))])
        parts.append(_table(["frames", f"`{a}` ms/step", "ms/frame", "exponent", f"`{b}` ms/step", "ms/frame",
                             "exponent", "FLOP ratio", "speed-up"], rows) + "\n")
        ea, eb = exponent(res, a, p), exponent(res, b, p)
        parts.append(f"Fitted exponent of time per step against frames (log-log least squares over "
                     f"{', '.join(map(str, sorted(o.frames)))}): `{a}` {_f(ea, '{:.2f}')}, "
                     f"`{b}` {_f(eb, '{:.2f}')}.\n")

        # --- memory and compute
        parts.append(f"## Peak memory and compute per step: `{a}` against `{b}` ({p})\n")
        rows = []
        for t in sweep:
            ra, rb = peak_mib(res, a, t, p), peak_mib(res, b, t, p)
            ma, mb = tensor_mib(res, a, t, p), tensor_mib(res, b, t, p)
            ga, gb = gflops(res, a, t, p), gflops(res, b, t, p)
            fa, fb = matmul_fraction(res, a, t, p), matmul_fraction(res, b, t, p)
            rows.append([str(t), _f(ra, "{:.0f}"), _f(rb, "{:.0f}"), _f(ra / rb if ra and rb else None, "{:.2f}"),
                         _f(ma, "{:.0f}"), _f(mb, "{:.0f}"), _f(ma / mb if ma and mb else None, "{:.2f}"),
                         _f(ga and ga[0]), _f(ga and ga[1]), _f(fa and 100 * fa, "{:.1f}%"),
                         _f(gb and gb[0]), _f(gb and gb[1]), _f(fb and 100 * fb, "{:.1f}%")])
        parts.append(_table(["frames", f"`{a}` RSS MiB", f"`{b}` RSS MiB", "ratio", f"`{a}` tensors MiB",
                             f"`{b}` tensors MiB", "ratio", f"`{a}` GFLOP", "GFLOP/s", f"of {p} matmul",
                             f"`{b}` GFLOP", "GFLOP/s", f"of {p} matmul"], rows) + "\n")

    # --- UNet3D
    if res.unet3d:
        parts.append("## Against diffusers' `UNet3DConditionModel` at matched parameters\n")
        parts.append("Widths searched (multiples of the group count, same number of levels) to the parameter count "
                     f"of `{a}`. `default` layout: diffusers' pattern, attention blocks (spatial self + text cross + "
                     "temporal) at every level but the coarsest, plus the mid block; `matched` layout: attention "
                     f"blocks only at the levels where `{a}` has cross or spatial attention, plus the mid block. "
                     f"Same clip and batch, text of {1 + cfg_a.max_words} tokens x {cfg_a.text_dim}.\n")
        rows = []
        for p in res.precisions:
            for t in o.unet3d_frames:
                for model in [a] + [f"unet3d-{k}" for k in res.unet3d]:
                    st, g, fr = step_time(res, model, t, p), gflops(res, model, t, p), matmul_fraction(res, model, t, p)
                    c = flop_cell(res, model, t) or {}
                    desc = f"`{a}`"
                    if model != a:
                        layout = model.split("-", 1)[1]
                        kw = res.unet3d[layout]["kwargs"]
                        desc = (f"`UNet3DConditionModel` {layout} (widths {tuple(kw['block_out_channels'])}, "
                                f"{kw['attention_head_dim']} head(s))")
                    rows.append([p, str(t), desc, f"{res.params[model]:,}", _f(st and st * 1e3),
                                 _f(peak_mib(res, model, t, p), "{:.0f}"), _f(tensor_mib(res, model, t, p), "{:.0f}"),
                                 _f(g and g[0]), _f(g and g[1]), _f(fr and 100 * fr, "{:.1f}%"),
                                 "-" if model == a else _x(speedup(res, t, model, p)),
                                 _flop_split(c["flops_by_op"]) if c.get("flops_by_op") else "-"])
        parts.append(_table(["precision", "frames", "model", "parameters", "ms/step", "RSS MiB", "tensors MiB",
                             "GFLOP", "GFLOP/s", "of same-precision matmul", f"`{a}` speed-up", "FLOP split"],
                            rows) + "\n")

    # --- compute reference
    parts.append("## Achieved compute\n")
    parts.append("Each model step's GFLOP/s as a fraction of a square matrix product's in the same precision, "
                 "measured in the same run.\n")
    rows = []
    for dt in ("bf16", "fp32"):
        vals = [mm[dt]["flops"] / med(mm[dt]["times"]) / 1e9 for mm in res.matmul if dt in mm]
        rows.append([f"{dt} matmul {o.matmul_size}x{o.matmul_size}x{o.matmul_size}",
                     " / ".join(f"{v:.1f}" for v in vals) + " (before / after the models)" if vals else "-"])
    for p in res.precisions:
        ref = matmul_gflops(res, p)
        for model in (a, b):
            for t in sorted(o.frames):
                g = gflops(res, model, t, p)
                if g:
                    rows.append([f"`{model}` step, {t} frames ({_prec_label(p)})",
                                 f"{g[1]:.1f} ({100 * g[1] / ref:.1f}% of the {p} matmul)" if ref else f"{g[1]:.1f}"])
    parts.append(_table(["kernel", "GFLOP/s"], rows) + "\n")

    # --- inspection
    parts.append("## Inspection overhead\n")
    i = res.inspect
    if i and "plain" in i:
        n = i["steps"]
        parts.append(f"`stunet.sampling.sample` of `{a}` ({i['frames']} frames, {n} DPM-Solver++ steps, guidance 4, "
                     f"{_prec_label(res.chosen)}), alternately without and with an `Inspector` recording features and "
                     f"temporal + cross attention at every step; median of {len(i['plain'])} rounds after one warm-up "
                     f"of each.\n")
        ov = inspect_overhead(res)
        parts.append(_table(["", "ms/step", "recorded MiB/step"], [
            ["plain", f"{med(i['plain']) * 1e3 / n:.1f}", "-"],
            ["with Inspector", f"{med(i['inspected']) * 1e3 / n:.1f}", f"{i['recorded_bytes'] / n / 2 ** 20:.2f}"],
            ["overhead", f"{ov:+.1%}", f"dropped records: {i['dropped']}"]]) + "\n")
    else:
        parts.append(f"not measured{': ' + i['error'] if i and 'error' in i else ''}\n")

    if errors:
        parts.append("## Failed measurements\n")
        parts.append("\n".join(f"- {e}" for e in errors) + "\n")

    # --- targets
    parts.append("## Targets (the speed-up judged by efficiency parity: the FLOP ratio is what equal efficiency gives)\n")
    parts.append("Checked and printed, never used to tune anything.\n")
    parts.append(_table(["target", "measured", "status"],
                        [[t.name, t.measured, f"**{t.status}**" if t.status == "NOT met" else t.status]
                         for t in targets(res)]) + "\n")
    parts.append(f"For comparison, the issue's own measurement: {PROTOTYPE}.\n")
    return "\n".join(parts)
