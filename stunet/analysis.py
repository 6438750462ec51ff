"""Model-free maths for looking inside a space-time U-Net (used by the studio, usable anywhere).

Everything here takes plain arrays (numpy, or torch tensors converted on the way in)
in the layouts ``stunet.inspection.Recording`` stores, and returns numpy arrays:

* ``pca_rgb``: a level's features (c t h w) as RGB images, the first three principal
  components of the channels, one basis for all frames of the level.
* ``frame_change``: how much a level's features change from one frame to the next.
* ``attention_matrix`` / ``by_offset`` / ``mean_by_offset`` / ``attention_distance``:
  temporal attention (h w heads t t) reduced to a frames x frames matrix, and re-indexed
  relative to the diagonal (key frame - query frame), since the raw average is mostly a
  diagonal band.
* ``word_maps``: cross-attention (l t h w per layer) aggregated DAAM-style into one
  space-time heat map per word at the clip's resolution.
* ``xt_slice``, ``frame_spans``, ``tile``, ``colorize``, ``overlay``: small image helpers.

Frames at a coarse level stand for several clip frames: level frame k of a level with
``t`` frames covers clip frames ``[k * T / t, (k + 1) * T / t)`` (``frame_spans``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["to_numpy", "pca_rgb", "frame_change", "frame_spans", "attention_matrix", "by_offset",
           "mean_by_offset", "attention_distance", "word_maps", "xt_slice", "tile", "colorize", "overlay",
           "normalize"]


def to_numpy(x) -> np.ndarray:
    """torch tensor (any dtype, any device) or array -> float32 numpy array.

    The cast happens in numpy: on a busy machine every small torch op pays for waking its
    thread pool, which adds up over the many small tensors of a recording.
    """
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        x = x.float().numpy() if str(x.dtype) == "torch.bfloat16" else x.numpy()
    return np.asarray(x, dtype=np.float32)


def clip_uint8(x) -> np.ndarray:
    """c t h w (or 1 c t h w) in [-1, 1] -> t h w c uint8, as ``stunet.video.to_uint8``, in numpy."""
    a = to_numpy(x)
    if a.ndim == 5:
        a = a[0]
    return np.round((np.clip(a, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(1, 2, 3, 0)


def normalize(x: np.ndarray, lo_q: float = 1.0, hi_q: float = 99.0) -> np.ndarray:
    """Robust min-max to [0, 1] (percentiles ``lo_q``..``hi_q``); a constant array maps to 0."""
    x = np.asarray(x, dtype=np.float32)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return np.zeros_like(x)
    lo, hi = np.percentile(finite, [lo_q, hi_q])
    if hi - lo < 1e-12:
        return np.zeros_like(x)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


# ----------------------------------------------------------------------------- features
def _orthonormalize(q: np.ndarray) -> np.ndarray:
    """Gram-Schmidt on the (few) columns of q."""
    out = np.empty_like(q)
    for i in range(q.shape[1]):
        v = q[:, i] - out[:, :i] @ (out[:, :i].T @ q[:, i])
        n = np.linalg.norm(v)
        out[:, i] = v / n if n > 1e-300 else 0.0
    return out


def top_eigenvectors(cov: np.ndarray, k: int, iters: int = 300) -> np.ndarray:
    """The k leading eigenvectors (columns, by decreasing eigenvalue) of a symmetric PSD matrix.

    Subspace iteration with a fixed start, then Rayleigh-Ritz on the k x k projection:
    only small matrix products, so it stays fast on a busy machine, where multi-threaded
    LAPACK (``np.linalg.eigh`` on 128 x 128) can take hundreds of milliseconds.
    """
    cov = np.asarray(cov, dtype=np.float64)
    c = cov.shape[0]
    k = min(k, c)
    if c <= 16:
        vals, vecs = np.linalg.eigh(cov)
        return vecs[:, np.argsort(vals)[::-1][:k]]
    q = _orthonormalize(np.random.default_rng(0).standard_normal((c, k)))
    for i in range(iters):
        new = _orthonormalize(cov @ q)
        done = i % 10 == 9 and np.abs(new - q).max() < 1e-7
        q = new
        if done:
            break
    vals, vecs = np.linalg.eigh(q.T @ cov @ q)
    return q @ vecs[:, np.argsort(vals)[::-1]]


def pca_rgb(features, components: int = 3) -> np.ndarray:
    """c t h w features -> t h w 3 float in [0, 1]: top principal components of the channels as RGB.

    One basis for all frames and positions of the level, so colours are comparable across
    frames. Signs are fixed (each component's largest loading is positive) so the colours
    are deterministic. Fewer than three channels leave the missing colours at zero.
    """
    x = to_numpy(features)
    if x.ndim != 4:
        raise ValueError(f"features must be c t h w, got shape {x.shape}")
    c, t, h, w = x.shape
    flat = x.reshape(c, -1).T                                          # n c (float32)
    flat = flat - flat.mean(0, keepdims=True)
    cov = (flat.T @ flat).astype(np.float64) / max(1, flat.shape[0] - 1)
    basis = top_eigenvectors(cov, min(components, c))                  # c k
    idx = np.abs(basis).argmax(0)
    basis = basis * np.sign(basis[idx, np.arange(basis.shape[1])] + 1e-30)
    proj = flat @ basis.astype(np.float32)                             # n k
    out = np.zeros((proj.shape[0], 3), dtype=np.float32)
    for i in range(min(3, proj.shape[1])):
        out[:, i] = normalize(proj[:, i])
    return out.reshape(t, h, w, 3)


def frame_change(features) -> np.ndarray:
    """c t h w -> (t - 1,): ||f[k+1] - f[k]|| / mean_k ||f[k]|| (0 for a constant level)."""
    x = to_numpy(features)
    if x.ndim != 4:
        raise ValueError(f"features must be c t h w, got shape {x.shape}")
    if x.shape[1] < 2:
        return np.zeros(0, dtype=np.float32)
    diffs = np.sqrt(((x[:, 1:] - x[:, :-1]) ** 2).sum(axis=(0, 2, 3)))
    scale = np.sqrt((x ** 2).sum(axis=(0, 2, 3))).mean()
    return (diffs / scale).astype(np.float32) if scale > 0 else np.zeros_like(diffs, dtype=np.float32)


def frame_spans(level_frames: int, clip_frames: int) -> list[tuple[int, int]]:
    """[start, end) clip frames each of ``level_frames`` level frames stands for."""
    if level_frames < 1 or clip_frames < level_frames or clip_frames % level_frames:
        raise ValueError(f"{clip_frames} clip frames cannot be split into {level_frames} level frames")
    s = clip_frames // level_frames
    return [(k * s, (k + 1) * s) for k in range(level_frames)]


# ----------------------------------------------------------------------------- temporal attention
def attention_matrix(probs, head: int | None = None, position: tuple[int, int] | None = None) -> np.ndarray:
    """h w heads t t softmax weights -> t t (query frame x key frame).

    ``head=None`` averages the heads; ``position=None`` averages all spatial positions,
    else (row, col) at the level's resolution. Rows still sum to 1.
    """
    p = to_numpy(probs)
    if p.ndim != 5 or p.shape[-1] != p.shape[-2]:
        raise ValueError(f"temporal attention must be h w heads t t, got shape {p.shape}")
    h, w, heads = p.shape[:3]
    if head is not None:
        if not 0 <= head < heads:
            raise ValueError(f"head must be in [0, {heads - 1}], got {head}")
        p = p[:, :, head:head + 1]
    if position is not None:
        r, c = position
        if not (0 <= r < h and 0 <= c < w):
            raise ValueError(f"position must be inside {h}x{w}, got {position}")
        p = p[r:r + 1, c:c + 1]
    return p.mean(axis=(0, 1, 2))


def by_offset(matrix) -> tuple[np.ndarray, np.ndarray]:
    """t t matrix -> (offsets -(t-1)..t-1, t x (2t-1) matrix M[q, d] = A[q, q + d], NaN outside)."""
    a = to_numpy(matrix)
    t = a.shape[0]
    offsets = np.arange(-(t - 1), t)
    out = np.full((t, 2 * t - 1), np.nan, dtype=np.float32)
    for q in range(t):
        out[q, (t - 1) - q:(t - 1) - q + t] = a[q]
    return offsets, out


def mean_by_offset(matrix) -> tuple[np.ndarray, np.ndarray]:
    """Average attention weight at each frame offset (over the queries where it exists)."""
    offsets, m = by_offset(matrix)
    with np.errstate(invalid="ignore"):
        return offsets, np.nanmean(m, axis=0).astype(np.float32)


def attention_distance(matrix) -> float:
    """Expected |key - query| in frames, averaged over query frames (0: attends only to itself)."""
    a = to_numpy(matrix)
    t = a.shape[0]
    d = np.abs(np.arange(t)[None, :] - np.arange(t)[:, None])
    rows = a / np.clip(a.sum(1, keepdims=True), 1e-12, None)
    return float((rows * d).sum(1).mean())


# ----------------------------------------------------------------------------- cross attention
def _linear_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights of 1D linear resampling, half-pixel centres (torch's align_corners=False)."""
    src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, None)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = src - i0
    m = np.zeros((n_out, n_in), dtype=np.float32)
    m[np.arange(n_out), i0] += 1 - f
    m[np.arange(n_out), i1] += f
    return m


def word_maps(maps: list, positions: list[int], size: tuple[int, int, int], reduce: str = "sum") -> np.ndarray:
    """DAAM for video: per-layer cross-attention (each l t h w) -> (len(positions), T, H, W).

    Each layer's maps for the given token positions are upsampled to ``size`` = (T, H, W)
    (nearest in time, since a coarse frame stands for several clip frames; bilinear in
    space) and summed over layers (``reduce="sum"``, as DAAM) or averaged (``"mean"``: each
    value is then the share of a pixel's attention the word takes, in [0, 1]).
    """
    if reduce not in ("sum", "mean"):
        raise ValueError("reduce must be 'sum' or 'mean'")
    T, H, W = size
    total = np.zeros((len(positions), T, H, W), dtype=np.float32)
    for m in maps:
        x = to_numpy(m)
        if x.ndim != 4:
            raise ValueError(f"cross-attention must be l t h w, got shape {x.shape}")
        if max(positions, default=0) >= x.shape[0]:
            raise ValueError(f"token position out of range (layer has {x.shape[0]} tokens)")
        x = x[list(positions)]                                         # n t h w
        t, h, w = x.shape[1:]
        if T % t:
            raise ValueError(f"{T} clip frames are not a multiple of {t} layer frames")
        x = np.repeat(x, T // t, axis=1)                               # n T h w
        total += np.einsum("Hh,nthw,Ww->ntHW", _linear_matrix(H, h), x, _linear_matrix(W, w), optimize=True)
    if reduce == "mean" and maps:
        total /= len(maps)
    return total


# ----------------------------------------------------------------------------- images
def xt_slice(video: np.ndarray, row: int) -> np.ndarray:
    """t h w c clip -> t w c: image row ``row`` over time (time runs down; Lumiere figure 2)."""
    v = np.asarray(video)
    if v.ndim != 4:
        raise ValueError(f"video must be t h w c, got shape {v.shape}")
    if not 0 <= row < v.shape[1]:
        raise ValueError(f"row must be in [0, {v.shape[1] - 1}], got {row}")
    return v[:, row]


def tile(images: list[np.ndarray], cols: int, pad: int = 2, fill: int = 0) -> np.ndarray:
    """Same-size h w c uint8 images -> one grid image, row-major."""
    if not images:
        raise ValueError("no images to tile")
    h, w, c = images[0].shape
    cols = max(1, min(cols, len(images)))
    rows = -(-len(images) // cols)
    out = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, c), fill, dtype=images[0].dtype)
    for i, im in enumerate(images):
        r, k = divmod(i, cols)
        out[r * (h + pad):r * (h + pad) + h, k * (w + pad):k * (w + pad) + w] = im
    return out


# Inferno, sampled at 9 points (matplotlib's colormap data): no matplotlib import needed.
_INFERNO = np.array([
    [0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
    [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164]], dtype=np.float32)


def colorize(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> uint8 RGB with the inferno colour map (NaN -> black)."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
    v = np.clip(v, 0, 1) * (len(_INFERNO) - 1)
    i = np.minimum(v.astype(np.int64), len(_INFERNO) - 2)
    f = (v - i)[..., None]
    rgb = _INFERNO[i] * (1 - f) + _INFERNO[i + 1] * f
    return rgb.round().astype(np.uint8)


def overlay(frame: np.ndarray, heat: np.ndarray, alpha: float = 0.65) -> np.ndarray:
    """h w 3 uint8 frame (shown in grey) under a [0, 1] heat map of the same h w."""
    grey = np.asarray(frame, dtype=np.float32).mean(-1, keepdims=True) * 0.6
    hm = colorize(heat).astype(np.float32)
    a = alpha * np.clip(np.asarray(heat, dtype=np.float32), 0, 1)[..., None] ** 0.5
    return (grey * (1 - a) + hm * a).round().clip(0, 255).astype(np.uint8)
