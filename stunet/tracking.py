"""Follow a point through time with the STUNet's own features (correspondence read out, not trained).

DIFT (Tang et al. 2023, arXiv 2306.03881): a diffusion network's intermediate features, at a moderate
noise level, match the same point across images; upsample them to the image, take the clicked
position's feature vector and its cosine similarity to every position of another image, and the
best match is the correspondence. DiffTrack (arXiv 2506.17220) finds that in video diffusion models
only some layers carry it, and that it sharpens as noise falls. Here the "other images" are the
clip's own frames, per level of the space-time pyramid (``Inspector`` features, c t h w) and per
denoising step. Lumiere's temporal attention runs per spatial position, so it cannot follow a moving
object itself: where the object went has to be in the features.

In the shapes world the object's centroid is measured on the pixels (``shapes.metrics``), so each
level's track is scored: pixels of error per frame against where the clicked point should be (the
centroid's path, offset by where the click sat on the object in its frame; exact for translation).

Coordinates: (x, y) = (column, row) in clip pixels; a pixel's centre is at +0.5, as the detectors'.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

TOLERANCE_PX = 2.0


@dataclass(frozen=True)
class Track:
    """One level's correspondence at one step: for every clip frame, the best match and its similarity."""
    level: str
    step: int
    points: np.ndarray          # t 2: (x, y) of the best match, clip pixels (pixel centres at +0.5)
    similarity: np.ndarray      # t h w: cosine similarity to the query, at clip resolution
    best: np.ndarray            # t: the best match's similarity


def check_point(frame, x, y, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """(frame, x, y) as ints inside a clip of ``shape`` = (frames, height, width), else ValueError naming it."""
    t, h, w = shape
    vals = []
    for name, v, hi in (("frame", frame, t), ("x (column)", x, w), ("y (row)", y, h)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer, float)) or float(v) != int(v):
            raise ValueError(f"{name} must be a whole number, got {v!r}")
        if not 0 <= int(v) < hi:
            raise ValueError(f"the point (frame {frame}, x {x}, y {y}) is outside the clip: {name} must be in "
                             f"0..{hi - 1} ({t} frames of {w}x{h})")
        vals.append(int(v))
    return vals[0], vals[1], vals[2]


def upsample(features: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """c t h w level features -> c T H W at clip resolution: bilinear in space (DIFT), each level frame
    repeated over the clip frames it stands for (``analysis.frame_spans``'s even split)."""
    c, t, h, w = features.shape
    T, H, W = shape
    if T % t:
        raise ValueError(f"a level with {t} frames does not divide a clip of {T}")
    x = features.float().permute(1, 0, 2, 3)                            # t c h w
    x = F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)
    return x.repeat_interleave(T // t, dim=0).permute(1, 0, 2, 3)       # c T H W


def follow(features: torch.Tensor, frame: int, x: int, y: int, shape: tuple[int, int, int], *,
           level: str = "", step: int = -1) -> Track:
    """The query = features at (frame, y, x); cosine similarity to every position of every frame; argmax per frame."""
    frame, x, y = check_point(frame, x, y, shape)
    f = F.normalize(upsample(features, shape), dim=0)                  # c T H W, unit vectors
    q = f[:, frame, y, x]
    sim = torch.einsum("c,cthw->thw", q, f)
    T, H, W = shape
    flat = sim.reshape(T, -1)
    best, idx = flat.max(dim=1)
    pts = torch.stack([idx % W, idx // W], dim=1).float() + 0.5         # (x, y) pixel centres
    return Track(level, step, pts.numpy(), sim.numpy(), best.numpy())


def follow_recording(recording, frame: int, x: int, y: int, shape: tuple[int, int, int], steps=None,
                     levels=None) -> dict[tuple[int, str], Track]:
    """``follow`` at every recorded (step, level) of an ``Inspector`` recording (or those asked for)."""
    check_point(frame, x, y, shape)
    out = {}
    for (step, level), feats in sorted(recording.features.items()):
        if (steps is None or step in steps) and (levels is None or level in levels):
            out[(step, level)] = follow(feats, frame, x, y, shape, level=level, step=step)
    return out


# ----------------------------------------------------------------------------- scoring (shapes world)
def object_path(video: np.ndarray) -> np.ndarray:
    """t 2: the measured centroid (x, y) of the clip's object per frame (NaN where there is none)."""
    from .shapes.metrics import measure_frames
    fm = measure_frames(video)
    return np.stack([fm.x, fm.y], axis=1)


def expected_path(path: np.ndarray, frame: int, x: int, y: int) -> np.ndarray:
    """Where the clicked point should be in every frame: the centroid's path, offset by the click's place
    on the object in ``frame`` (the point itself when the click is the centroid)."""
    if not np.isfinite(path[frame]).all():
        raise ValueError(f"no object was found in frame {frame} to follow")
    return path + (np.array([x + 0.5, y + 0.5]) - path[frame])


def track_error(track: Track, expected: np.ndarray) -> np.ndarray:
    """t: pixels between the track and the expected point (NaN where the object is missing)."""
    return np.linalg.norm(track.points - expected, axis=1)


def score(tracks: dict[tuple[int, str], Track], video: np.ndarray, frame: int, x: int, y: int,
          tolerance: float = TOLERANCE_PX) -> list[dict]:
    """Per (step, level): median and max error (px) and the share of frames within ``tolerance``, over
    the frames with an object, best first."""
    exp = expected_path(object_path(video), frame, x, y)
    rows = []
    for (step, level), tr in tracks.items():
        err = track_error(tr, exp)
        ok = np.isfinite(err)
        e = err[ok]
        rows.append({"step": step, "level": level, "frames": int(ok.sum()),
                     "median_px": float(np.median(e)) if len(e) else None,
                     "max_px": float(e.max()) if len(e) else None,
                     "within": float(100.0 * (e <= tolerance).mean()) if len(e) else 0.0,
                     "errors": [None if not np.isfinite(v) else round(float(v), 3) for v in err]})
    return sorted(rows, key=lambda r: (-r["within"], r["median_px"] if r["median_px"] is not None else 1e9))


def centroid_pixel(video: np.ndarray, frame: int) -> tuple[int, int]:
    """(x, y) of the pixel holding the object's measured centroid in ``frame`` (a point "on the object")."""
    p = object_path(video)[frame]
    if not np.isfinite(p).all():
        raise ValueError(f"no object was found in frame {frame}")
    return int(p[0]), int(p[1])
