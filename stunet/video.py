"""Video I/O: tensors <-> uint8 frames, H.264 MP4 / GIF / .npy writers, file names, safe image reading."""
from __future__ import annotations

import os
import re
from pathlib import Path
from struct import error as struct_error

import numpy as np
import torch

FORMATS = ("mp4", "gif", "npy")
DEFAULT_FPS = 8
MAX_IMAGE_PIXELS = 4096 * 4096          # refuse larger images before decoding them
MAX_IMAGE_BYTES = 20 * 2**20


def to_uint8(clip: torch.Tensor) -> np.ndarray:
    """c t h w (or 1 c t h w) in [-1, 1] -> t h w c uint8."""
    if clip.ndim == 5:
        clip = clip[0]
    x = ((clip.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).cpu().numpy()


def from_uint8(frames: np.ndarray) -> torch.Tensor:
    """t h w c uint8 -> 1 c t h w, or a batch b t h w c -> b c t h w; float in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(frames))
    if x.ndim == 4:
        x = x[None]
    return x.permute(0, 4, 1, 2, 3).float().div(127.5).sub(1)


def slug(text: str, n: int = 40) -> str:
    """A file-name part from a prompt: lower-case words joined by '-', at most ``n`` characters."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:n] or "clip"


def upscale(frames: np.ndarray, scale: int) -> np.ndarray:
    """Nearest-neighbour upscaling (t h w c): crisp pixels instead of a browser's blur."""
    if scale <= 1:
        return frames
    return frames.repeat(scale, axis=1).repeat(scale, axis=2)


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = DEFAULT_FPS, scale: int = 8,
                fmt: str | None = None, fast: bool = False) -> Path:
    """Write t h w 3 uint8 frames; format from ``fmt`` or the extension (mp4: H.264 yuv420p).

    ``fast``: H.264's ``veryfast`` preset instead of the default ``medium`` (the studio's player
    copy: a little larger, several times quicker to encode, the same quality setting)."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".")).lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown video format {fmt!r}: use one of {', '.join('.' + f for f in FORMATS)}")
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError("frames must be uint8 (t, h, w, 3)")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "npy":
        np.save(path, frames, allow_pickle=False)
        return path
    big = upscale(frames, scale)
    import imageio.v2 as imageio
    if fmt == "gif":
        imageio.mimsave(path, list(big), format="GIF", duration=1000 / fps, loop=0)
    else:
        if big.shape[1] % 2 or big.shape[2] % 2:
            big = np.pad(big, ((0, 0), (0, big.shape[1] % 2), (0, big.shape[2] % 2), (0, 0)))
        imageio.mimwrite(path, list(big), format="FFMPEG", fps=fps, codec="libx264", pixelformat="yuv420p",
                         macro_block_size=1, output_params=["-movflags", "+faststart", "-crf", "18",
                                                          *(["-preset", "veryfast"] if fast else [])])
    return path


def read_video_frames(path: str | os.PathLike) -> np.ndarray:
    """Decode an MP4/GIF written by ``write_video`` (t h w 3 uint8), or load a .npy clip."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    import imageio.v3 as iio
    return np.asarray(iio.imread(path, index=None))[..., :3]


IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")   # the only Pillow decoders read_image tries


def read_image(path: str | os.PathLike, size: tuple[int, int], *, max_bytes: int = MAX_IMAGE_BYTES,
               max_pixels: int = MAX_IMAGE_PIXELS, max_side: int | None = None,
               formats: tuple[str, ...] = IMAGE_FORMATS) -> np.ndarray:
    """Read an image file safely and resize it to (h, w): h w 3 uint8.

    The file size and the header (format, width, height) are checked before any pixel is
    decoded, so a small file that claims 20000x20000 pixels is refused without allocating
    them; only the decoders in ``formats`` are tried (Pillow would otherwise also open EPS,
    which runs Ghostscript, and dozens of rarer formats). Every failure is a ``ValueError``
    with a short message that holds no path.
    """
    from PIL import Image, UnidentifiedImageError
    path = Path(path)
    if not path.is_file():
        raise ValueError("not an image file")
    if path.stat().st_size > max_bytes:
        raise ValueError(f"the image file is larger than {max_bytes / 2**20:g} MB")
    if path.stat().st_size == 0:
        raise ValueError("the image file is empty")
    names = ", ".join(formats)
    refused = None
    try:
        with Image.open(path, formats=list(formats)) as im:
            w, h = im.size
            if w < 1 or h < 1 or w * h > max_pixels or (max_side is not None and max(w, h) > max_side):
                side = f" and {max_side} pixels a side" if max_side is not None else ""
                refused = f"the image is {w}x{h} pixels; the limit is {max_pixels:,} pixels{side}"
            else:
                if im.format == "JPEG":
                    im.draft("RGB", (max(size[1], 1), max(size[0], 1)))     # decode at a reduced scale
                im.seek(0)
                im = im.convert("RGB").resize((size[1], size[0]), Image.Resampling.BOX)
                return np.asarray(im, dtype=np.uint8)
    except Image.DecompressionBombError:
        refused = f"the image claims too many pixels; the limit is {max_pixels:,} pixels"
    except UnidentifiedImageError:
        refused = f"not an image file ({names})"
    except (OSError, SyntaxError, EOFError, ValueError, struct_error):
        refused = "the image file is damaged or truncated and cannot be decoded"
    raise ValueError(refused)
