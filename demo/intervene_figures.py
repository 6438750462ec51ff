"""Pictures and tables of the Intervene, Follow a point and Attention summary views (``demo.intervene``).

Plain functions (no Gradio): clips are t h w 3 uint8, tracks ``stunet.tracking.Track``, summaries
``stunet.attention_summary.LayerSummary``. Detector readings come from ``stunet.shapes``.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from stunet import analysis as V

from .figures import ACCENT, BG, INK, MUTED, _layout, font, go, xt_image

MARK = (56, 189, 248)            # the track's marker (sky blue: visible on the inferno map)


# ----------------------------------------------------------------------------- detector readings
def readings(video: np.ndarray, prompt: str) -> dict | None:
    """The detectors' readings of a clip against a shapes-world caption (None for another prompt)."""
    from stunet.shapes import world
    from stunet.shapes.metrics import evaluate_clip
    from stunet.shapes.periodic import evaluate_periodic
    try:
        spec = world.parse_caption(prompt)
    except ValueError:
        return None
    s = evaluate_clip(video, spec)
    p = evaluate_periodic(video, spec)
    out = {"colour": (s.color or "none", s.color_ok), "shape": (s.shape or "none", s.shape_ok),
           "motion": (s.motion or "none", s.motion_ok),
           "coherence": (f"one object in {s.frames_one_object}/{s.frames} frames", s.coherent)}
    if p is not None:
        sense = p.measured_direction or "no steady sense"
        period = "not measurable" if not p.measurable else f"period {p.measured_period:.1f} frames"
        out["periodic"] = (f"{period}, {sense} (asked {p.expected_period:.1f}, {p.expected_direction})", p.right)
    return out


def readings_md(original: dict | None, intervened: dict | None, part: str) -> str:
    if original is None:
        return "Not a shapes-world caption: the detectors have nothing to check the clips against."
    lines = [f"| detector | original | with {part} |", "|---|---|---|"]              # part: Markdown-escaped
    for k, (text, ok) in original.items():
        t2, ok2 = intervened[k]
        lines.append(f"| {k} | {'✓' if ok else '✗'} {text} | {'✓' if ok2 else '✗'} {t2} |")
    return "\n".join(lines)


def xt_pair(original: np.ndarray, intervened: np.ndarray, row: int) -> np.ndarray:
    """The two clips' X-T slices (``figures.xt_image``), one above the other, labelled."""
    a, b = xt_image(original, row), xt_image(intervened, row)
    w = max(a.shape[1], b.shape[1])
    out = Image.new("RGB", (w + 110, a.shape[0] + b.shape[0] + 8), BG)
    d = ImageDraw.Draw(out)
    for i, (name, im) in enumerate((("original", a), ("intervened", b))):
        y = i * (a.shape[0] + 8)
        out.paste(Image.fromarray(im), (110, y))
        d.text((4, y + im.shape[0] // 2), name, fill=INK, font=font(13))
    return np.asarray(out)


# ----------------------------------------------------------------------------- follow a point
def picker_frame(video: np.ndarray, frame: int, point: tuple[int, int] | None, side: int = 256) -> np.ndarray:
    """One frame enlarged (nearest) to click on, with the picked pixel outlined."""
    H, W = video.shape[1:3]
    s = max(1, side // max(H, W))
    im = video[frame].repeat(s, 0).repeat(s, 1).copy()
    if point is not None:
        x, y = point
        im[y * s:(y + 1) * s, x * s:(x + 1) * s] = (0.3 * im[y * s:(y + 1) * s, x * s:(x + 1) * s]
                                                    + 0.7 * np.array(ACCENT)).astype(np.uint8)
    return im


def clicked_pixel(ix: float, iy: float, image_size: tuple[int, int], clip_size: tuple[int, int]) -> tuple[int, int]:
    """A click at (ix, iy) on the enlarged frame (width, height) -> the clip pixel (x, y)."""
    (iw, ih), (W, H) = image_size, clip_size
    return min(W - 1, max(0, int(ix * W / iw))), min(H - 1, max(0, int(iy * H / ih)))


def track_image(video: np.ndarray, tracks: list, max_frames: int = 12, cell: int = 64) -> np.ndarray:
    """Rows = levels, columns = frames: each level's cosine similarity to the clicked point over the frame
    (inferno, scaled per level), the best match marked."""
    T, H, W = video.shape[:3]
    idx = np.unique(np.linspace(0, T - 1, min(T, max_frames)).round().astype(int))
    s = max(1, cell // max(H, W))
    label_w, top, pad = 60, 20, 3
    im = Image.new("RGB", (label_w + len(idx) * (W * s + pad), top + len(tracks) * (H * s + pad)), BG)
    d = ImageDraw.Draw(im)
    for j, f in enumerate(idx):
        d.text((label_w + j * (W * s + pad) + 2, 3), f"frame {f}", fill=MUTED, font=font(10))
    for i, tr in enumerate(tracks):
        y0 = top + i * (H * s + pad)
        d.text((4, y0 + H * s // 2 - 7), tr.level, fill=INK, font=font(12))
        sim = tr.similarity
        lo, hi = float(sim.min()), float(sim.max())
        for j, f in enumerate(idx):
            heat = (sim[f] - lo) / max(hi - lo, 1e-6)
            tile = V.overlay(video[f], heat).repeat(s, 0).repeat(s, 1)
            x0 = label_w + j * (W * s + pad)
            im.paste(Image.fromarray(tile), (x0, y0))
            px, py = tr.points[f]
            cx, cy = x0 + px * s, y0 + py * s
            d.ellipse([cx - 3, cy - 3, cx + 3, cy + 3], outline=MARK, width=2)
    return np.asarray(im)


def track_error_figure(rows: list[dict], title: str):
    """Pixels of error per frame, one line per level (the shapes world's measured centroid as truth)."""
    fig = go.Figure()
    for r in rows:
        fig.add_trace(go.Scatter(y=r["errors"], mode="lines+markers", name=f"{r['level']} ({r['within']:.0f} %)",
                                 marker=dict(size=4)))
    fig.add_hline(y=2.0, line_dash="dot", line_color="#9ca3af")
    fig.update_xaxes(title_text="frame")
    fig.update_yaxes(title_text="error (px)", rangemode="tozero")
    return _layout(fig, title, height=300)


def track_table_md(rows: list[dict], step: int, tolerance: float) -> str:
    lines = [f"Step {step}: per level, frames whose best match is within {tolerance:g} px of where the clicked point "
             "should be (the object's measured centroid path, offset by the click).", "",
             "| level | within | median error | worst |", "|---|---:|---:|---:|"]
    for r in rows:
        med = "-" if r["median_px"] is None else f"{r['median_px']:.1f} px"
        worst = "-" if r["max_px"] is None else f"{r['max_px']:.1f} px"
        lines.append(f"| {r['level']} | {r['within']:.0f} % | {med} | {worst} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- attention summaries
def summary_figure(groups: list[tuple[str, list]]):
    """Small multiples: one column per (model, layer), entropy on top and off-diagonal share below, a line per
    head over the denoising steps."""
    from plotly.subplots import make_subplots
    cols = [(name, s) for name, summ in groups for s in summ]
    if not cols:
        from .figures import empty_figure
        return empty_figure("No temporal attention was recorded.")
    fig = make_subplots(rows=2, cols=len(cols), shared_yaxes=True, vertical_spacing=0.12,
                        subplot_titles=[f"{name} · {s.layer} ({s.frames} frames)" for name, s in cols])
    palette = ["#ea580c", "#3b82f6", "#10b981", "#a855f7", "#eab308", "#ef4444", "#14b8a6", "#6366f1"]
    for j, (name, s) in enumerate(cols, start=1):
        for h in range(s.entropy.shape[1]):
            color = palette[h % len(palette)]
            for i, values in enumerate((s.entropy[:, h], s.off_diagonal[:, h]), start=1):
                fig.add_trace(go.Scatter(x=s.steps, y=values, mode="lines", line=dict(color=color, width=1.5),
                                         name=f"head {h}", legendgroup=f"h{h}", showlegend=(i == 1 and j == 1)),
                              row=i, col=j)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_yaxes(title_text="entropy / log t", row=1, col=1)
    fig.update_yaxes(title_text="off-diagonal share", row=2, col=1)
    fig.update_xaxes(title_text="denoising step", row=2)
    return _layout(fig, "Temporal attention per layer, head and step", height=460)
