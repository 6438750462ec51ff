"""Recording -> figure. Plain functions (no Gradio), so tests can call them directly.

Inputs are what the library produces: a ``stunet.inspection.Recording``, the clip as
t h w 3 uint8, the model's ``STUNetConfig``. Outputs are plotly figures or h w 3 uint8
images (PIL draws the labels). The maths lives in ``stunet.analysis``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from stunet import analysis as V
from stunet.model import describe_pyramid, level_path


class _LazyPlotly:
    """``plotly.graph_objects``, imported on the first figure drawn, not when the studio is imported
    (it costs start-up time the page should not wait for)."""

    def __getattr__(self, name):
        import plotly.graph_objects as go
        return getattr(go, name)


go = _LazyPlotly()

BG = (255, 255, 255)
INK = (40, 40, 48)
MUTED = (120, 120, 132)
ACCENT = (234, 88, 12)          # temporal attention / highlights (orange)
LEVEL_COLORS = {"enc": "#3b82f6", "mid": "#ea580c", "dec": "#10b981"}
PLOT_FONT = dict(family="Inter, system-ui, sans-serif", size=12)


@lru_cache(maxsize=8)
def font(size: int = 13):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:                      # very old Pillow: bitmap font only
        return ImageFont.load_default()


def _layout(fig: go.Figure, title: str, height: int = 360, **kw) -> go.Figure:
    fig.update_layout(title=dict(text=title, x=0.01, xanchor="left", font=dict(size=14)), height=height,
                      margin=dict(l=60, r=20, t=50, b=45), template="plotly_white", font=PLOT_FONT, **kw)
    return fig


def _text_width(draw: ImageDraw.ImageDraw, text: str, f) -> int:
    return int(draw.textlength(text, font=f))


def empty_figure(message: str, height: int = 260) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font=dict(size=14, color="#6b7280"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, "", height=height)


def message_image(message: str, width: int = 640, height: int = 120) -> np.ndarray:
    im = Image.new("RGB", (width, height), (248, 248, 250))
    d = ImageDraw.Draw(im)
    f = font(15)
    d.text(((width - _text_width(d, message, f)) // 2, height // 2 - 9), message, fill=MUTED, font=f)
    return np.asarray(im)


# ============================================================================ the pyramid
def level_kind(name: str) -> str:
    """'enc1' -> 'enc', 'mid' -> 'mid', 'dec0' -> 'dec'."""
    return name.rstrip("0123456789")


def level_layers(lv, spatial_attention: bool) -> str:
    """What a level (``describe_pyramid``'s ``LevelInfo``) holds besides its convolutions, in words."""
    parts = []
    if lv.temporal_conv:
        parts.append("temporal conv")
    if lv.temporal_attention:
        parts.append(f"temporal attention ×{lv.temporal_attention}")
    if lv.cross_attention:
        parts.append("text cross-attention")
    if spatial_attention:
        parts.append("spatial attention")
    return ", ".join(parts) or "spatial conv only"


def pyramid_figure(config, frames: int | None = None) -> go.Figure:
    """Every level as a row of frames on a shared clip-time axis.

    Each box is one frame of that level, as wide as the clip frames it stands for and as
    tall as its spatial size: time shrinks along with space. Orange rows hold temporal
    attention (every position attends over all of that level's frames).
    """
    window = config.frames
    T = min(frames or window, window)
    rows = describe_pyramid(config, T, path=True)                 # enc0 .. mid .. dec0, as the Inspector names them
    depths = [d for _, d in level_path(config.levels)]
    H0 = rows[0].height
    fig = go.Figure()
    n = len(rows)
    for r, (lv, depth) in enumerate(zip(rows, depths)):
        y0 = n - 1 - r
        s = T // lv.frames
        hh = 0.8 * lv.height / H0
        xs, ys = [], []
        gap = min(0.08 * s, 0.12)
        for k in range(lv.frames):
            a, b = k * s + gap, (k + 1) * s - gap
            xs += [a, b, b, a, a, None]
            ys += [y0 - hh / 2, y0 - hh / 2, y0 + hh / 2, y0 + hh / 2, y0 - hh / 2, None]
        color = LEVEL_COLORS["mid"] if lv.temporal_attention else LEVEL_COLORS.get(level_kind(lv.name), "#3b82f6")
        layers = level_layers(lv, bool(config.spatial_attention[depth]))
        hover = (f"<b>{lv.name}</b> (level {depth})<br>{lv.channels} channels × {lv.frames} frames × "
                 f"{lv.height}×{lv.width}<br>one frame here = {s} clip frame{'s' if s > 1 else ''}<br>{layers}")
        fig.add_trace(go.Scatter(x=xs, y=ys, fill="toself", mode="lines", line=dict(color=color, width=1),
                                 fillcolor=color, opacity=0.85 if lv.temporal_attention else 0.55,
                                 hoveron="fills", hoverinfo="text", text=hover, name=lv.name, showlegend=False))
        fig.add_annotation(x=-0.5, y=y0, text=f"<b>{lv.name}</b>", showarrow=False, xanchor="right",
                           font=dict(size=12))
        label = f"{lv.channels}×{lv.frames}×{lv.height}×{lv.width}  ·  {layers}"
        fig.add_annotation(x=T + 0.5, y=y0, text=label, showarrow=False, xanchor="left",
                           font=dict(size=11, color="#c2410c" if lv.temporal_attention else "#374151"))
    for r in range(n - 1):
        a, b = rows[r], rows[r + 1]
        if a.frames == b.frames and a.height == b.height:
            continue
        down = b.height < a.height
        tf = max(a.frames, b.frames) // min(a.frames, b.frames)
        sf = max(a.height, b.height) // min(a.height, b.height)
        op = "÷" if down else "×"
        txt = f"space {op}{sf}" + (f", time {op}{tf}" if tf > 1 else ", time kept")
        fig.add_annotation(x=-0.5, y=n - 1.5 - r, text=txt, showarrow=False, xanchor="right",
                           font=dict(size=10, color="#6b7280"))
    fig.update_xaxes(range=[-7.5 * T / 32 - 3, T * 1.75 + 2], title_text="clip frame", showgrid=False,
                     zeroline=False, tickvals=list(range(0, T + 1, max(1, T // 8))))
    fig.update_yaxes(visible=False, range=[-0.7, n - 0.3])
    extra = ""
    if frames and frames > window:
        extra = f" — one {window}-frame window; {frames} frames run as overlapping windows (MultiDiffusion)"
    return _layout(fig, f"Space-time pyramid: channels × frames × height × width{extra}",
                   height=90 + 62 * n, hovermode="closest")


# ============================================================================ feature maps
def nearest(values: list[int], want: int) -> int:
    return min(values, key=lambda v: (abs(v - want), v))


def features_image(recording, step: int, cell: int | None = None) -> np.ndarray:
    """Rows = levels (enc0 .. mid .. dec0), columns = clip frames; PCA-RGB of each level's features.

    A coarse level's frame is drawn once, centred on the clip frames it stands for, with a
    bracket under them: the temporal compression is visible as fewer, spread-out frames.
    """
    names = [n for n in recording.level_names if (step, n) in recording.features]
    if not names:
        return message_image("No feature maps were recorded at this step.")
    feats = {n: recording.features[(step, n)] for n in names}
    T = max(int(f.shape[1]) for f in feats.values())
    cell = cell or int(np.clip(1150 // max(1, T) - 2, 32, 96))
    pad, label_w, top = 2, 150, 22
    row_h = cell + 16
    W = label_w + T * (cell + pad) + 10
    Hh = top + len(names) * row_h + 6
    im = Image.new("RGB", (W, Hh), BG)
    d = ImageDraw.Draw(im)
    f, fs = font(13), font(10)
    for k in range(0, T, max(1, T // 16)):
        x = label_w + k * (cell + pad)
        d.text((x + 2, 4), str(k), fill=MUTED, font=fs)
    d.text((8, 4), "clip frame:", fill=MUTED, font=fs)
    for r, name in enumerate(names):
        x_ = feats[name]
        c, t, h, w = (int(v) for v in x_.shape)
        rgb = (V.pca_rgb(x_) * 255).round().astype(np.uint8)          # t h w 3
        y = top + r * row_h
        d.text((8, y + cell // 2 - 14), name, fill=INK, font=f)
        d.text((8, y + cell // 2 + 2), f"{c}x{t}x{h}x{w}", fill=MUTED, font=fs)
        span = T // t
        for k in range(t):
            x0 = label_w + k * span * (cell + pad)
            x1 = label_w + (k + 1) * span * (cell + pad) - pad
            cx = (x0 + x1) // 2
            tileim = Image.fromarray(rgb[k]).resize((cell, cell), Image.Resampling.NEAREST)
            im.paste(tileim, (cx - cell // 2, y))
            if span > 1:
                yb = y + cell + 5
                d.line([(x0 + 2, yb), (x1 - 2, yb)], fill=(180, 180, 190), width=1)
                d.line([(x0 + 2, yb - 3), (x0 + 2, yb)], fill=(180, 180, 190), width=1)
                d.line([(x1 - 2, yb - 3), (x1 - 2, yb)], fill=(180, 180, 190), width=1)
    return np.asarray(im)


def change_figure(recording, step: int) -> go.Figure:
    """Relative frame-to-frame change of every level's features, on the clip-frame axis."""
    names = [n for n in recording.level_names if (step, n) in recording.features]
    if not names:
        return empty_figure("No feature maps at this step.")
    T = max(int(recording.features[(step, n)].shape[1]) for n in names)
    fig = go.Figure()
    for name in names:
        x = recording.features[(step, name)]
        t = int(x.shape[1])
        ch = V.frame_change(x)
        if ch.size == 0:
            continue
        s = T // t
        xs = [(k + 1) * s - 0.5 for k in range(t - 1)]
        dash = "dot" if level_kind(name) == "dec" else "solid"
        fig.add_trace(go.Scatter(x=xs, y=ch, mode="lines+markers", name=f"{name} ({t} frames)",
                                 line=dict(dash=dash, width=2), marker=dict(size=5),
                                 hovertemplate=f"{name}<br>between clip frames ~%{{x:.1f}}<br>"
                                               "change %{y:.3f}<extra></extra>"))
    fig.update_xaxes(title_text="clip frame (boundary between consecutive level frames)", range=[-0.5, T - 0.5])
    fig.update_yaxes(title_text="‖f[k+1] − f[k]‖ / mean ‖f‖", rangemode="tozero")
    return _layout(fig, f"How much each level's features change from frame to frame (step {step})", height=320,
                   legend=dict(orientation="h", y=-0.3))


# ============================================================================ temporal attention
def layer_label(layer: str) -> str:
    """'mid.0.1' -> 'mid · block 0 · layer 1'."""
    parts = layer.split(".")
    if len(parts) == 3:
        return f"{parts[0]} · block {parts[1]} · attention {parts[2]}"
    if len(parts) == 2:
        return f"{parts[0]} · block {parts[1]}"
    return layer


def _frame_ticks(t: int, T: int):
    s = max(1, T // t)
    text = [f"{k}" if s == 1 else f"{k} ({k * s}–{(k + 1) * s - 1})" for k in range(t)]
    return list(range(t)), text


def temporal_matrix_figure(matrix: np.ndarray, clip_frames: int, title: str, hide_diagonal: bool = False) -> go.Figure:
    m = np.array(matrix, dtype=np.float32)
    t = m.shape[0]
    if hide_diagonal:
        m[np.arange(t), np.arange(t)] = np.nan
    tick, text = _frame_ticks(t, clip_frames)
    s = max(1, clip_frames // t)
    custom = [[f"{q * s}–{(q + 1) * s - 1} → {k * s}–{(k + 1) * s - 1}" for k in range(t)] for q in range(t)]
    fig = go.Figure(go.Heatmap(
        z=m, x=tick, y=tick, colorscale="Inferno", customdata=custom, zmin=0 if not hide_diagonal else None,
        texttemplate="%{z:.2f}" if t <= 12 else None, textfont=dict(size=10),
        hovertemplate=("query frame %{y} → key frame %{x}<br>clip frames %{customdata}<br>"
                       "weight %{z:.3f}<extra></extra>"),
        colorbar=dict(title=dict(text="weight", side="right"), thickness=12)))
    fig.update_xaxes(title_text="key frame (attended to)", tickvals=tick, ticktext=text if t <= 12 else None,
                     constrain="domain")
    fig.update_yaxes(title_text="query frame", tickvals=tick, ticktext=text if t <= 12 else None,
                     autorange="reversed", scaleanchor="x")
    return _layout(fig, title, height=420)


def offset_figure(matrix: np.ndarray, title: str) -> go.Figure:
    from plotly.subplots import make_subplots
    offsets, m = V.by_offset(matrix)
    _, mean = V.mean_by_offset(matrix)
    t = m.shape[0]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.62, 0.38], vertical_spacing=0.06)
    fig.add_trace(go.Heatmap(z=m, x=offsets, y=list(range(t)), colorscale="Inferno", zmin=0, showscale=False,
                             hovertemplate="query frame %{y}, offset %{x:+d}<br>weight %{z:.3f}<extra></extra>"),
                  row=1, col=1)
    fig.add_trace(go.Bar(x=offsets, y=mean, marker_color="#ea580c", name="mean",
                         hovertemplate="offset %{x:+d}: mean weight %{y:.3f}<extra></extra>"), row=2, col=1)
    fig.update_yaxes(title_text="query", autorange="reversed", row=1, col=1)
    fig.update_yaxes(title_text="mean", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="key frame − query frame (0 = the diagonal)", row=2, col=1)
    fig.update_layout(showlegend=False)
    return _layout(fig, title, height=420)


def distance_figure(recording, head: int | None, position) -> go.Figure:
    """Expected |key − query| (level frames) per denoising step, one line per temporal-attention layer."""
    fig = go.Figure()
    for layer in recording.temporal_layers():
        steps = sorted(s for (s, n) in recording.temporal_attention if n == layer)
        ys = [V.attention_distance(V.attention_matrix(recording.temporal_attention[(s, layer)], head, position))
              for s in steps]
        fig.add_trace(go.Scatter(x=steps, y=ys, mode="lines+markers", name=layer_label(layer), marker=dict(size=4),
                                 hovertemplate="step %{x}: %{y:.2f} frames<extra></extra>"))
    n = max((s for s, _ in recording.temporal_attention), default=0) + 1
    fig.update_xaxes(title_text="denoising step (0 = pure noise)", dtick=1 if n <= 12 else None)
    fig.update_yaxes(title_text="mean |key − query| (frames)", rangemode="tozero")
    return _layout(fig, "How far in time each temporal-attention layer looks, over the denoising steps", height=300,
                   legend=dict(orientation="h", y=-0.35))


def trail_image(video: np.ndarray) -> np.ndarray:
    """Every frame at once (maximum over time): where things move, to pick a position on."""
    v = np.asarray(video)
    return (0.35 * v.mean(0) + 0.65 * v.max(0)).round().astype(np.uint8)


def picker_image(video: np.ndarray, grid: tuple[int, int], position: tuple[int, int] | None,
                 side: int = 256) -> np.ndarray:
    """The motion trail, upscaled, with the attention level's grid and the picked cell outlined."""
    base = trail_image(video)
    H, W = base.shape[:2]
    im = Image.fromarray(base).resize((side, side * H // W), Image.Resampling.NEAREST)
    d = ImageDraw.Draw(im, "RGBA")
    gh, gw = grid
    sx, sy = im.width / gw, im.height / gh
    for i in range(1, gw):
        d.line([(i * sx, 0), (i * sx, im.height)], fill=(255, 255, 255, 40))
    for j in range(1, gh):
        d.line([(0, j * sy), (im.width, j * sy)], fill=(255, 255, 255, 40))
    if position is not None:
        r, c = position
        d.rectangle([c * sx, r * sy, (c + 1) * sx - 1, (r + 1) * sy - 1], outline=ACCENT + (255,), width=3)
    return np.asarray(im)


def picked_cell(x: float, y: float, image_size: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
    """Pixel (x, y) on the picker image of size (width, height) -> (row, col) on the level's grid."""
    w, h = image_size
    gh, gw = grid
    return (int(np.clip(y * gh // max(1, h), 0, gh - 1)), int(np.clip(x * gw // max(1, w), 0, gw - 1)))


# ============================================================================ word attention
def word_attention_image(video: np.ndarray, words: list[str], maps: np.ndarray, max_cols: int = 16,
                         cell: int = 64) -> np.ndarray:
    """Rows = words, columns = frames: the clip in grey under each word's heat map (normalised per word)."""
    if not words:
        return message_image("The prompt has no known words to show.")
    T = maps.shape[1]
    cols = np.unique(np.linspace(0, T - 1, min(T, max_cols)).round().astype(int))
    pad, label_w, top = 2, 110, 20
    W = label_w + len(cols) * (cell + pad) + 6
    Hh = top + len(words) * (cell + pad) + 4
    im = Image.new("RGB", (W, Hh), BG)
    d = ImageDraw.Draw(im)
    f, fs = font(14), font(10)
    for j, k in enumerate(cols):
        d.text((label_w + j * (cell + pad) + 2, 4), f"frame {k}", fill=MUTED, font=fs)
    for i, word in enumerate(words):
        m = maps[i]
        peak = float(m.max())
        norm = m / peak if peak > 0 else m
        y = top + i * (cell + pad)
        d.text((8, y + cell // 2 - 9), word, fill=INK, font=f)
        for j, k in enumerate(cols):
            tile = V.overlay(video[k], norm[k])
            im.paste(Image.fromarray(tile).resize((cell, cell), Image.Resampling.NEAREST),
                     (label_w + j * (cell + pad), y))
    return np.asarray(im)


def word_share_figure(words: list[str], maps: np.ndarray, title: str) -> go.Figure:
    """Mean attention mass of each word per clip frame (how much of the pixels' attention it takes)."""
    if not words:
        return empty_figure("The prompt has no known words.")
    fig = go.Figure()
    for i, w in enumerate(words):
        fig.add_trace(go.Scatter(x=list(range(maps.shape[1])), y=maps[i].mean(axis=(1, 2)), mode="lines",
                                 name=w, hovertemplate=f"{w}<br>frame %{{x}}: %{{y:.3f}}<extra></extra>"))
    fig.update_xaxes(title_text="clip frame")
    fig.update_yaxes(title_text="mean attention mass", rangemode="tozero")
    return _layout(fig, title, height=280, legend=dict(orientation="h", y=-0.35))


# ============================================================================ clip views
def _up(a: np.ndarray, scale: int) -> np.ndarray:
    return a.repeat(scale, 0).repeat(scale, 1)


def xt_image(video: np.ndarray, row: int, scale: int | None = None) -> np.ndarray:
    """The middle frame with the chosen row marked, next to the x-t slice of that row (time runs down)."""
    v = np.asarray(video)
    T, H, W = v.shape[:3]
    scale = scale or max(2, 192 // W)
    frame = _up(v[T // 2], scale).copy()
    y0 = row * scale
    frame[y0:y0 + scale, :, :] = (0.4 * frame[y0:y0 + scale] + 0.6 * np.array(ACCENT)).astype(np.uint8)
    xt = _up(V.xt_slice(v, row), scale)
    gap, top = 24, 22
    out = Image.new("RGB", (frame.shape[1] + gap + xt.shape[1] + 10, top + max(frame.shape[0], xt.shape[0]) + 4), BG)
    out.paste(Image.fromarray(frame), (0, top))
    out.paste(Image.fromarray(xt), (frame.shape[1] + gap, top))
    d = ImageDraw.Draw(out)
    fs = font(13)
    d.text((2, 3), f"frame {T // 2}, row {row}", fill=MUTED, font=fs)
    d.text((frame.shape[1] + gap, 3), f"row {row} over time (down)", fill=MUTED, font=fs)
    return np.asarray(out)


def x0_steps(recording, max_cols: int = 10, must: int | None = None) -> list[int]:
    steps = sorted(recording.x0)
    if len(steps) <= max_cols:
        return steps
    idx = np.unique(np.linspace(0, len(steps) - 1, max_cols).round().astype(int))
    chosen = {steps[i] for i in idx}
    if must is not None and must in recording.x0:
        chosen.add(must)
    return sorted(chosen)


def x0_filmstrip(recording, row: int, current: int | None = None, cell: int = 64) -> np.ndarray:
    """x0-hat over the denoising steps: columns = steps; rows = first, middle, last frame and the x-t slice."""
    steps = x0_steps(recording, must=current)
    if not steps:
        return message_image("No x0-hat was recorded.")
    clips = {s: V.clip_uint8(recording.x0[s]) for s in steps}     # t h w 3
    T = next(iter(clips.values())).shape[0]
    rows = [("frame 0", lambda v: v[0]), (f"frame {T // 2}", lambda v: v[T // 2]),
            (f"frame {T - 1}", lambda v: v[T - 1]), (f"x-t, row {row}", lambda v: V.xt_slice(v, row))]
    pad, label_w, top = 3, 96, 34
    W = label_w + len(steps) * (cell + pad) + 6
    Hh = top + len(rows) * (cell + pad) + 4
    im = Image.new("RGB", (W, Hh), BG)
    d = ImageDraw.Draw(im)
    f, fs = font(12), font(10)
    for j, s in enumerate(steps):
        x = label_w + j * (cell + pad)
        ts = recording.timesteps.get(s)
        color = ACCENT if s == current else MUTED
        d.text((x + 2, 3), f"step {s}", fill=color, font=fs)
        if ts is not None:
            d.text((x + 2, 16), f"t={ts}", fill=color, font=fs)
        if s == current:
            bottom = top + len(rows) * (cell + pad) - pad + 1
            d.rectangle([x - 2, top - 2, x + cell + 1, bottom], outline=ACCENT, width=2)
    for i, (name, get) in enumerate(rows):
        y = top + i * (cell + pad)
        d.text((6, y + cell // 2 - 8), name, fill=INK, font=f)
        for j, s in enumerate(steps):
            tile = Image.fromarray(np.ascontiguousarray(get(clips[s]))).resize((cell, cell), Image.Resampling.NEAREST)
            im.paste(tile, (label_w + j * (cell + pad), y))
    return np.asarray(im)


def preview_grid(frames: np.ndarray, max_frames: int = 32, cols: int = 8, cell: int = 96) -> np.ndarray:
    """t h w 3 uint8 -> a grid of (at most ``max_frames``, evenly chosen) frames, upscaled nearest."""
    T, H, W = frames.shape[:3]
    idx = np.unique(np.linspace(0, T - 1, min(T, max_frames)).round().astype(int))
    scale = max(1, cell // max(H, W))
    tiles = [_up(frames[i], scale) for i in idx]
    return V.tile(tiles, cols=min(cols, len(tiles)), pad=2, fill=255)
