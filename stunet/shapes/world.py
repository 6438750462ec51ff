"""The shapes world: procedural, captioned clips with per-frame ground truth.

A clip shows one coloured shape (circle, square, triangle) on a black background,
doing one motion. The caption says colour, shape, motion and (optionally) speed;
the metadata says the same in numbers, and per frame the object's centre, size and
angle. Everything is deterministic by seed. Time is measured in *base frames*: a clip
drawn at stride s shows base frames 0, s, 2s, ... (the model is told s), so the same
motion seen at stride 4 is what a keyframe model would generate.

An object is drawn in one of ``STYLES``: ``flat`` (the default: one flat colour, the world the
shipped model was trained on), ``outline`` (hollow), ``gradient`` (full colour at the centre, half
as bright at the outline) or ``stripes`` (bands of full and dark colour that turn with the object).
The caption is the same in every style (``STYLE_WORDS``, ``styled_caption``).

Speeds are chosen so that "quickly spinning" turns a square by 60 degrees per 4 base
frames (past its 45-degree symmetry half-period: keyframes every 4th frame cannot tell
the direction; Lumiere figure 2) and "quickly bouncing" has a 10-frame period.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

COLORS = {
    "red": (230, 40, 40), "orange": (245, 140, 20), "yellow": (240, 225, 30), "green": (40, 190, 60),
    "cyan": (30, 210, 220), "blue": (40, 80, 240), "purple": (160, 60, 220), "white": (240, 240, 240),
}
SHAPES = ("circle", "square", "triangle")
LINEAR = {"moving left": (-1, 0), "moving right": (1, 0), "moving up": (0, -1), "moving down": (0, 1)}
MOTIONS = tuple(LINEAR) + ("bouncing", "spinning", "orbiting", "growing", "shrinking", "standing still")
SPEEDS = ("slowly", "quickly")
FILLER = ("a", "an", "the", "is")
# Every word a caption can contain: the text encoder's vocabulary.
VOCABULARY = tuple(dict.fromkeys(
    list(FILLER) + list(COLORS) + list(SHAPES) + [w for m in MOTIONS for w in m.split()] + list(SPEEDS)))

# Per-speed parameters, in pixels of a 32-pixel frame and base frames.
LINEAR_SPEED = {"slowly": 0.2, None: 0.35, "quickly": 0.5}          # px / frame
BOUNCE_PERIOD = {"slowly": 24.0, None: 16.0, "quickly": 10.0}       # frames per bounce
SPIN_SPEED = {"slowly": 3.0, None: 6.0, "quickly": 15.0}            # degrees / frame (clockwise)
ORBIT_PERIOD = {"slowly": 40.0, None: 24.0, "quickly": 12.0}        # frames per turn (counter-clockwise)
GROW_RATE = {"slowly": 0.08, None: 0.14, "quickly": 0.22}           # px radius / frame
BASE_SPAN = 32                                                      # base frames a linear/grow clip is planned for

# Circumradius range of objects at 32 px (triangles and squares keep their corners inside).
RADIUS = (6.0, 8.0)

# Rendering styles (issue 33: appearance that lives in the spatial weights). The caption does not change
# with the style: the words in STYLE_WORDS are *not* in VOCABULARY (the shipped model's tokenizer has no
# ids trained for them), so a style is asked for by the weights, never by the prompt; ``styled_caption``
# names it for people (file names, tables). Every style keeps the object one connected component of one
# hue on black, centred where the flat one is, so the world's detectors (``metrics``, ``periodic``) read
# its motion as they read a flat one's; ``style_detect`` tells the styles apart.
STYLES = ("flat", "outline", "gradient", "stripes")
STYLE_WORDS = {"flat": "flat", "outline": "outlined", "gradient": "shaded", "stripes": "striped"}
OUTLINE_INNER = 0.45        # outline: the hole is the same shape at this fraction of the circumradius
GRADIENT_RIM = 0.5          # gradient: brightness at the circumradius (centre 1), falling as (distance / r)^2
STRIPE_PERIOD = 4.0         # stripes: px (of a 32-pixel frame) per bright + dark pair of bands
STRIPE_DARK = 0.45          # stripes: brightness of the dark bands


@dataclass(frozen=True)
class ClipSpec:
    color: str
    shape: str
    motion: str
    speed: str | None = None          # None = normal speed

    def __post_init__(self):
        if self.color not in COLORS or self.shape not in SHAPES or self.motion not in MOTIONS \
                or self.speed not in (None, *SPEEDS):
            raise ValueError(f"not a shapes-world clip: {self}")
        if self.speed is not None and self.motion == "standing still":
            raise ValueError("standing still has no speed")

    @property
    def caption(self) -> str:
        speed = f"{self.speed} " if self.speed else ""
        return f"a {self.color} {self.shape} {speed}{self.motion}"

    @property
    def period(self) -> float | None:
        """Expected period in base frames for periodic motions (spin: one symmetry period)."""
        if self.motion == "bouncing":
            return BOUNCE_PERIOD[self.speed]
        if self.motion == "orbiting":
            return ORBIT_PERIOD[self.speed]
        if self.motion == "spinning":
            return symmetry_degrees(self.shape) / SPIN_SPEED[self.speed]
        return None


def symmetry_degrees(shape: str) -> float:
    return {"circle": 360.0, "square": 90.0, "triangle": 120.0}[shape]


def parse_caption(caption: str) -> ClipSpec:
    """Inverse of ``ClipSpec.caption`` (raises ValueError on anything else)."""
    words = caption.lower().split()
    if len(words) < 3 or words[0] not in ("a", "an"):
        raise ValueError(f"not a shapes-world caption: {caption!r}")
    color, shape, rest = words[1], words[2], words[3:]
    speed = rest[0] if rest and rest[0] in SPEEDS else None
    motion = " ".join(rest[1:] if speed else rest)
    return ClipSpec(color, shape, motion, speed)


def check_style(style: str) -> str:
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; styles: {', '.join(STYLES)}")
    return style


def styled_caption(caption: str, style: str) -> str:
    """The caption with the style's word before the shape ("a red outlined circle moving left"); a flat
    clip's caption is its own. For people only: the model's prompt is the caption without the word."""
    if check_style(style) == "flat":
        return caption
    words = caption.split()
    return " ".join(words[:2] + [STYLE_WORDS[style]] + words[2:])


@dataclass
class Clip:
    video: np.ndarray                 # uint8, t h w 3
    spec: ClipSpec
    stride: int
    # per frame ground truth (pixel units of this clip's resolution)
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    radius: np.ndarray = field(repr=False)
    angle: np.ndarray = field(repr=False)   # degrees, clockwise on screen
    style: str = "flat"               # how the object is drawn (STYLES); the caption does not say it

    @property
    def caption(self) -> str:
        return self.spec.caption

    @property
    def styled_caption(self) -> str:
        return styled_caption(self.caption, self.style)

    def metadata(self) -> dict:
        return {"caption": self.caption, "color": self.spec.color, "shape": self.spec.shape,
                "motion": self.spec.motion, "speed": self.spec.speed, "stride": self.stride,
                "period": self.spec.period, "style": self.style,
                "frames": [{"x": float(a), "y": float(b), "radius": float(r), "angle": float(g)}
                           for a, b, r, g in zip(self.x, self.y, self.radius, self.angle)]}


def all_specs(spinning_circles: bool = False) -> list[ClipSpec]:
    """Every clip kind the world draws (a spinning circle looks still, so it is left out)."""
    out = []
    for c in COLORS:
        for s in SHAPES:
            for m in MOTIONS:
                if m == "spinning" and s == "circle" and not spinning_circles:
                    continue
                for sp in ((None,) if m == "standing still" else (None, *SPEEDS)):
                    out.append(ClipSpec(c, s, m, sp))
    return out


# ---------------------------------------------------------------------------- rendering
def _shape_mask(shape: str, px, py, cx, cy, r, angle_deg):
    """Inside-test for arrays of sample points px, py (any shape, broadcast with t-leading params)."""
    dx, dy = px - cx, py - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    a = np.deg2rad(angle_deg)
    ca, sa = np.cos(a), np.sin(a)
    # rotate points by -angle (screen y points down, so a positive angle looks clockwise)
    u, v = ca * dx + sa * dy, -sa * dx + ca * dy
    if shape == "square":
        half = r / math.sqrt(2.0)
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if shape == "triangle":  # equilateral, circumradius r, apex up at angle 0
        inside = np.ones(np.broadcast(u, v).shape, dtype=bool)
        for k in range(3):
            th = np.deg2rad(90.0 + 120.0 * k)          # outward normals at 90, 210, 330 degrees (screen: down, ...)
            nx, ny = math.cos(th), math.sin(th)
            inside &= (u * nx + v * ny) <= r / 2.0
        return inside
    raise ValueError(shape)


def _gauge(shape: str, dx, dy, r, angle_deg):
    """How far out a point lies, as the scale of the shape (same centre and angle) whose outline passes
    through it: 0 at the centre, 1 on the object's own outline (``_shape_mask`` is gauge <= 1)."""
    if shape == "circle":
        return np.sqrt(dx * dx + dy * dy) / r
    a = np.deg2rad(angle_deg)
    ca, sa = np.cos(a), np.sin(a)
    u, v = ca * dx + sa * dy, -sa * dx + ca * dy
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) / (r / math.sqrt(2.0))
    if shape == "triangle":
        g = None
        for k in range(3):
            th = np.deg2rad(90.0 + 120.0 * k)
            d = (u * math.cos(th) + v * math.sin(th)) / (r / 2.0)
            g = d if g is None else np.maximum(g, d)
        return g
    raise ValueError(shape)


def _style_weight(style: str, shape: str, px, py, cx, cy, r, angle_deg, k: float):
    """Brightness (0..1) of the object's sample points in ``style`` (not flat), relative to its colour."""
    dx, dy = px - cx, py - cy
    if style == "outline":      # hollow: the inner part of the shape (gauge < OUTLINE_INNER) is left black
        return _gauge(shape, dx, dy, r, angle_deg) >= OUTLINE_INNER
    if style == "gradient":     # full colour at the centre, GRADIENT_RIM of it on the outline, along the shape
        g = np.minimum(_gauge(shape, dx, dy, r, angle_deg), 1.0)
        return 1.0 - (1.0 - GRADIENT_RIM) * g * g
    if style == "stripes":      # bands across the object's own horizontal axis: they turn with it
        a = np.deg2rad(angle_deg)
        u = np.cos(a) * dx + np.sin(a) * dy
        return np.where(np.cos(2 * math.pi * u / (STRIPE_PERIOD * k)) >= 0.0, 1.0, STRIPE_DARK)
    raise ValueError(f"unknown style {style!r}; styles: {', '.join(STYLES)}")


def render(shape: str, color, x, y, radius, angle, height: int, width: int, supersample: int = 4,
           style: str = "flat") -> np.ndarray:
    """Anti-aliased frames (t h w 3, uint8) of one object on black; per-frame params are arrays (t,).
    ``style``: one of STYLES (``flat``, the default, is the world's original drawing, bit for bit)."""
    s = supersample
    ys = (np.arange(height * s) + 0.5) / s
    xs = (np.arange(width * s) + 0.5) / s
    py, px = ys[None, :, None], xs[None, None, :]
    p = lambda a: np.asarray(a, dtype=np.float64)[:, None, None]
    inside = _shape_mask(shape, px, py, p(x), p(y), p(radius), p(angle))
    if check_style(style) == "flat":
        cover = inside.reshape(len(x), height, s, width, s).mean(axis=(2, 4))   # t h w in [0, 1]
    else:
        weight = inside * _style_weight(style, shape, px, py, p(x), p(y), p(radius), p(angle),
                                        min(height, width) / 32.0)
        cover = weight.reshape(len(x), height, s, width, s).mean(axis=(2, 4))
    rgb = np.asarray(color, dtype=np.float64)
    return np.round(cover[..., None] * rgb).astype(np.uint8)


# ---------------------------------------------------------------------------- motion
def trajectory(spec: ClipSpec, frames: int, stride: int, size: int, rng: np.random.Generator):
    """Per-frame (x, y, radius, angle) for base frames 0, stride, 2*stride, ... at ``size`` px."""
    k = size / 32.0
    u = np.arange(frames, dtype=np.float64) * stride                 # base frame index
    span = max(frames * stride, 1)
    r0 = rng.uniform(*RADIUS) * k
    angle0 = rng.uniform(0.0, 90.0) if spec.shape != "circle" else 0.0
    x = np.full(frames, size / 2); y = np.full(frames, size / 2)
    radius = np.full(frames, r0); angle = np.full(frames, angle0)
    m, sp = spec.motion, spec.speed
    margin = 1.0 * k

    def start_range(extent):   # positions where an object of circumradius r0 fits, before moving `extent`
        lo, hi = r0 + margin, size - r0 - margin - extent
        return (lo, hi) if hi > lo else (size / 2 - extent / 2, size / 2 - extent / 2)

    if m in LINEAR:
        dx, dy = LINEAR[m]
        v = LINEAR_SPEED[sp] * k
        travel = v * (span - stride)
        r0 = min(r0, max(4.0 * k, (size - 2 * margin - travel) / 2))        # long fast clips: smaller object
        radius[:] = r0
        lo, hi = start_range(travel)
        along = rng.uniform(lo, hi)
        across = rng.uniform(r0 + margin, size - r0 - margin)
        pos = along + v * u
        if dx:
            x = pos if dx > 0 else size - pos
            y = np.full(frames, across)
        else:
            y = pos if dy > 0 else size - pos
            x = np.full(frames, across)
    elif m == "bouncing":
        period = BOUNCE_PERIOD[sp]
        floor = size - r0 - margin
        height = rng.uniform(0.45, 0.6) * size
        height = min(height, floor - r0 - margin)
        phase = rng.uniform(0, 1)
        f = np.mod(u / period + phase, 1.0)
        y = floor - 4.0 * height * f * (1.0 - f)                         # parabola: gravity, floor contact
        x = np.full(frames, rng.uniform(r0 + margin, size - r0 - margin))
    elif m == "spinning":
        angle = angle0 + SPIN_SPEED[sp] * u
        x = np.full(frames, rng.uniform(r0 + margin, size - r0 - margin))
        y = np.full(frames, rng.uniform(r0 + margin, size - r0 - margin))
    elif m == "orbiting":
        r0 = min(r0, 6.5 * k); radius[:] = r0
        orbit = rng.uniform(6.0, 8.0) * k
        orbit = min(orbit, size / 2 - r0 - margin)
        phase = rng.uniform(0, 2 * math.pi)
        th = phase + 2 * math.pi * u / ORBIT_PERIOD[sp]
        x = size / 2 + orbit * np.cos(th)
        y = size / 2 - orbit * np.sin(th)                                # counter-clockwise on screen
    elif m in ("growing", "shrinking"):
        rate = GROW_RATE[sp] * k
        lo_r, hi_r = 3.0 * k, 10.0 * k
        change = min(rate * (span - stride), hi_r - lo_r)
        rate_eff = change / max(span - stride, 1)
        start = rng.uniform(lo_r, hi_r - change)
        rr = start + rate_eff * u
        radius = rr if m == "growing" else (start + change) - rate_eff * u
        x = np.full(frames, rng.uniform(hi_r * 0 + (start + change) + margin, size - (start + change) - margin))
        y = np.full(frames, rng.uniform((start + change) + margin, size - (start + change) - margin))
    elif m == "standing still":
        x = np.full(frames, rng.uniform(r0 + margin, size - r0 - margin))
        y = np.full(frames, rng.uniform(r0 + margin, size - r0 - margin))
    return np.asarray(x, float), np.asarray(y, float), np.asarray(radius, float), np.asarray(angle, float)


def make_clip(spec: ClipSpec, frames: int = 32, size: int = 32, stride: int = 1, seed: int = 0,
              style: str = "flat") -> Clip:
    """Draw one clip. Deterministic in (spec, frames, size, stride, seed); ``style`` changes the drawing
    only (the same seed gives the same motion, size and place in every style)."""
    if frames < 1 or size < 8 or stride < 1:
        raise ValueError("frames >= 1, size >= 8, stride >= 1")
    check_style(style)
    rng = np.random.default_rng(seed)
    x, y, r, a = trajectory(spec, frames, stride, size, rng)
    video = render(spec.shape, COLORS[spec.color], x, y, r, a, size, size, style=style)
    return Clip(video, spec, stride, x, y, r, a, style)


def random_spec(rng: np.random.Generator, specs: list[ClipSpec] | None = None,
                p: np.ndarray | None = None) -> ClipSpec:
    """One clip kind: uniform over ``specs`` (all of them by default), or with probabilities ``p``."""
    specs = specs or _ALL
    if p is None:
        return specs[int(rng.integers(len(specs)))]
    return specs[int(rng.choice(len(specs), p=p))]


def spec_probs(motion_weights: dict[str, float], specs: list[ClipSpec] | None = None) -> np.ndarray:
    """Probabilities over ``specs`` that weight each clip kind by its motion (1 where not named).

    ``{"bouncing": 2}`` draws every bouncing kind twice as often as any other kind. Raises
    ValueError naming the motions for an unknown motion, and for a weight that is not finite and > 0.
    """
    specs = specs or _ALL
    for m, w in motion_weights.items():
        if m not in MOTIONS:
            raise ValueError(f"unknown motion {m!r}; motions: {', '.join(MOTIONS)}")
        if not (math.isfinite(w) and w > 0):
            raise ValueError(f"motion weight for {m!r} must be finite and > 0, got {w}")
    w = np.array([float(motion_weights.get(s.motion, 1.0)) for s in specs])
    return w / w.sum()


def motion_shares(p: np.ndarray, specs: list[ClipSpec] | None = None) -> dict[str, float]:
    """Share of draws per motion under probabilities ``p`` over ``specs``."""
    specs = specs or _ALL
    out = dict.fromkeys(MOTIONS, 0.0)
    for s, q in zip(specs, p):
        out[s.motion] += float(q)
    return out


_ALL = all_specs()


def stream(seed: int = 0, frames: int = 32, size: int = 32, strides=(1,)):
    """Endless deterministic stream of clips (the training data)."""
    rng = np.random.default_rng(seed)
    while True:
        spec = random_spec(rng)
        stride = int(strides[int(rng.integers(len(strides)))])
        yield make_clip(spec, frames, size, stride, seed=int(rng.integers(2**63 - 1)))
