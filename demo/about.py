"""The About tab: what a space-time U-Net is, one picture (an SVG drawn from the model's config), the reference."""
from __future__ import annotations

import html
import math

from . import limits as L
from stunet.model import describe_pyramid

REFERENCE = ("Omer Bar-Tal, Hila Chefer, Omer Tov, Charles Herrmann, Roni Paiss, Shiran Zada, Ariel Ephrat, "
             "Junhwa Hur, Guanghui Liu, Amit Raj, Yuanzhen Li, Michael Rubinstein, Tomer Michaeli, Oliver Wang, "
             "Deqing Sun, Tali Dekel, Inbar Mosseri. <i>Lumiere: A Space-Time Diffusion Model for Video "
             "Generation.</i> arXiv:2401.12945, 2024. "
             "<a href='https://arxiv.org/abs/2401.12945' target='_blank' rel='noopener'>arxiv.org/abs/2401.12945</a>")

TEXT = """
### What is a space-time U-Net?

Most text-to-video models first make a few distant **keyframes** and then fill the gaps with a separate
temporal super-resolution model, so the motion between keyframes is only ever decided locally (a fast
spinning wheel can turn the wrong way). Lumiere's **Space-Time U-Net (STUNet)** makes the whole clip in one
pass instead. Like an image U-Net it halves the **spatial** resolution from level to level, and it also
halves **time**: each temporal down-sampling merges pairs of frames, so the coarsest level sees the whole clip
in a few frames. There, full **temporal attention** (every position attends over all frames) is cheap, and
global motion is decided; the decoder then upsamples space and time back. The temporal layers (factorized 1D
temporal convolutions at the finer levels, attention at the coarsest) are added to a pre-trained image U-Net
and start as identities. Clips longer than the training window are denoised as overlapping windows whose
predictions are averaged at every step (MultiDiffusion).

Because space and time live in different layers, Lumiere exchanges appearance by swapping only the image
layers (section 4.1, stylized generation): a *Style* (Generate, Advanced, where the server offers styles) is
the image layers fine-tuned in one style, mixed with the originals at the chosen strength, every temporal
layer kept. Lumiere trains its image layers on frames; here that lost the motion (the measured motion fell
by 43-60 points), because this model's image layers were trained together with its temporal ones. The
shipped style trains the same image layers inside the video model, on moving clips, with every temporal
layer frozen: at full strength 64 % of its frames read as outlined and the motion verdicts move by 5 points
(not significant at 60 clips), though the objects hold their size less well (the style card in
assets/stunet-shapes-styles has the measurement).

*Upscale* (Generate, on where the server has an SSR model) is Lumiere's last stage: a second, small diffusion
model lifts the 32×32 clip to 128×128. It sees 8 frames at a time; the windows overlap and their
predictions are averaged at every step (MultiDiffusion). Measured on 60 clips (assets/stunet-ssr): shrunk back,
the upscaled clips keep the base clips' verdicts (colour, motion, coherence in all 60, shape in 59); against
the world's own 128×128 drawing their error is under half of bicubic upscaling's; and what the SSR stage adds
changes more across a window boundary than elsewhere with independent windows than with MultiDiffusion, in
59 of 60 clips, though by little (ratio 1.03 against 0.99): at this scale the base clip decides nearly
everything the SSR stage draws.

The picture: each box is a level's feature volume, front face = height × width, depth = frames;
orange = temporal attention. The Inspect tab shows what actually happens in each of them for your clip.
"""


def architecture_svg(config, frames: int | None = None) -> str:
    """A U-shaped drawing of the levels as cuboids (face = space, depth = time)."""
    rows = describe_pyramid(config, frames, path=True)        # enc0 .. mid .. dec0
    n = len(rows)
    L_ = (n + 1) // 2
    H0, T0 = rows[0].height, rows[0].frames
    face = lambda r: 30 + 70 * r.height / H0          # noqa: E731
    depth = lambda r: 8 + 62 * r.frames / T0          # noqa: E731
    W, Hs = 900, 150 + 140 * L_
    col_gap = (W - 240) / max(1, n - 1)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 {W} {Hs}' width='100%' "
             f"style='max-width:{W}px;font-family:system-ui,sans-serif' role='img' "
             f"aria-label='Space-time U-Net levels'>",
             "<defs><marker id='arr' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='7' markerHeight='7' "
             "orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='#6b7280'/></marker></defs>"]
    boxes = []
    for i, r in enumerate(rows):
        level = min(i, n - 1 - i)
        cx = 90 + i * col_gap
        cy = 70 + 140 * level + 50
        f, d = face(r), depth(r)
        dx, dy = d * 0.7, -d * 0.45
        x0, y0 = cx - f / 2 - dx / 2, cy - f / 2 - dy / 2
        color = "#fb923c" if r.temporal_attention else ("#93c5fd" if r.name.startswith("enc") else
                                                         "#6ee7b7" if r.name.startswith("dec") else "#fdba74")
        stroke = "#c2410c" if r.temporal_attention else "#475569"
        # top, side, front faces
        parts.append(f"<polygon points='{x0},{y0} {x0 + dx},{y0 + dy} {x0 + dx + f},{y0 + dy} {x0 + f},{y0}' "
                     f"fill='{color}' fill-opacity='0.55' stroke='{stroke}'/>")
        parts.append(f"<polygon points='{x0 + f},{y0} {x0 + f + dx},{y0 + dy} {x0 + f + dx},{y0 + dy + f} "
                     f"{x0 + f},{y0 + f}' fill='{color}' fill-opacity='0.75' stroke='{stroke}'/>")
        parts.append(f"<rect x='{x0}' y='{y0}' width='{f}' height='{f}' fill='{color}' stroke='{stroke}'/>")
        parts.append(f"<text x='{x0 + f / 2}' y='{y0 + f + 16}' font-size='12' text-anchor='middle' fill='#111827'>"
                     f"<tspan font-weight='600'>{html.escape(r.name)}</tspan> "
                     f"{r.channels}×{r.frames}×{r.height}×{r.width}</text>")
        if r.temporal_attention:
            parts.append(f"<text x='{x0 + f / 2}' y='{y0 + f + 31}' font-size='11' text-anchor='middle' fill='#c2410c'>"
                         f"temporal attention ×{r.temporal_attention}</text>")
        elif r.temporal_conv:
            parts.append(f"<text x='{x0 + f / 2}' y='{y0 + f + 31}' font-size='11' text-anchor='middle' fill='#475569'>"
                         f"+ 1D temporal conv</text>")
        # (left, top, right, bottom) of the drawn cube
        boxes.append((x0, y0 + dy, x0 + f + dx, y0 + f))
    for i in range(n - 1):
        a, b = rows[i], rows[i + 1]
        (al, at, ar, ab), (bl, bt, br, bb) = boxes[i], boxes[i + 1]
        down = b.height < a.height
        if down:       # right edge of this cube -> top-left of the next one
            x1, y1, x2, y2 = ar + 4, (at + ab) / 2, bl + 6, bt - 4
        else:          # top-right of this cube -> left edge of the next one
            x1, y1, x2, y2 = ar - 6, at - 4, bl - 4, (bt + bb) / 2
        parts.append(f"<line x1='{x1}' y1='{y1}' x2='{x2}' y2='{y2}' stroke='#6b7280' stroke-width='1.5' "
                     f"marker-end='url(#arr)'/>")
        tf = max(a.frames, b.frames) // max(1, min(a.frames, b.frames))
        op = "÷" if down else "×"
        label = f"space {op}2" + (f", time {op}{tf}" if tf > 1 else ", time kept")
        mx, my = (x1 + x2) / 2, (y1 + y2) / 2
        angle = math.degrees(math.atan2(y2 - y1, x2 - x1))
        parts.append(f"<text x='{mx:.1f}' y='{my - 5:.1f}' font-size='10' text-anchor='middle' fill='#4b5563' "
                     f"transform='rotate({angle:.1f} {mx:.1f} {my:.1f})'>{label}</text>")
    for i in range(L_ - 1):
        (al, at, ar, ab), (bl, bt, br, bb) = boxes[i], boxes[n - 1 - i]
        y = at - 14
        parts.append(f"<line x1='{ar - 10}' y1='{y}' x2='{bl + 10}' y2='{y}' stroke='#9ca3af' "
                     f"stroke-dasharray='5 4' marker-end='url(#arr)'/>")
        if i == 0:
            parts.append(f"<text x='{(ar + bl) / 2}' y='{y - 8}' font-size='12' text-anchor='middle' "
                         "fill='#6b7280'>skip connections (same space-time size)</text>")
    height = max(b[3] for b in boxes) + 45
    parts[0] = parts[0].replace(f"viewBox='0 0 {W} {Hs}'", f"viewBox='0 0 {W} {height:.0f}'")
    parts.append("</svg>")
    return "".join(parts)


def about_html(config, params: int | None = None) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
                   for k, v in L.limits_table(config.temporal_factor, config.frames, config.strides))
    model = (f"This studio runs a STUNet with {config.levels} levels, channels {list(config.channels)}, "
             f"a {config.frames}-frame {config.height}×{config.width} window, temporal factor "
             f"{config.temporal_factor}" + (f", {params:,} parameters" if params else "") + ".")
    return (f"<div class='about-figure'>{architecture_svg(config)}</div>"
            f"<p class='model-line'>{html.escape(model)}</p>"
            f"<p class='reference'><b>Reference.</b> {REFERENCE}</p>"
            f"<details><summary>Limits of this server</summary><table class='limits'>{rows}</table></details>")
