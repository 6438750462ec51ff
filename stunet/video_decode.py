"""Safe decoding of uploaded clips (GIF, MP4/H.264, and .npy for the command line) and of mask images.

An uploaded video is attack surface: ffmpeg's format probing will happily read an HLS playlist
(or an AVI holding one) that only *claims* to be a video and follow its references to local files
(the "HLS-in-AVI local file read"), and a small file can claim to hold millions of pixels or frames.
So here:

* the file's size is checked first, then its **magic bytes**: ``GIF87a``/``GIF89a`` -> GIF,
  ``....ftyp`` -> MP4, ``\\x93NUMPY`` -> .npy (only when ``allow_npy``); the extension is ignored;
* GIF is decoded by Pillow's GIF decoder only, frame by frame: the logical screen size is checked
  before any pixel is decoded and again after every frame (a frame may grow it), the frame count
  and the wall time while decoding; decoding stops at the first frame past a cap;
* MP4 is decoded by the ffmpeg binary of ``imageio-ffmpeg`` in a **subprocess** with a timeout,
  with the demuxer **forced** (``-f mp4``: no probing, so a playlist is never parsed as one), a
  protocol whitelist of ``file`` only, the H.264 decoder forced, one video stream, and the frames
  scaled to the model's size inside ffmpeg; a first ffmpeg run reads the header (codec and size are
  checked before any frame is decoded);
* .npy: the header (dtype, shape) is read before the array, never with pickles.

Every refusal is a ``ValueError`` with a short message that holds no path. Frames come back as
t h w 3 uint8 at the requested size (box filter).
"""
from __future__ import annotations

import io
import os
import re
import subprocess
import time
from pathlib import Path
from struct import error as struct_error

import numpy as np

MAX_VIDEO_BYTES = 8 * 2**20
MAX_FRAMES = 128
MAX_PIXELS = 2048 * 2048          # per frame, width x height (from the header, before decoding)
MAX_SIDE = 4096
DECODE_TIMEOUT_S = 20.0
VIDEO_KINDS = ("gif", "mp4")


def sniff(head: bytes) -> str | None:
    """'gif', 'mp4' or 'npy' from a file's first bytes (None: none of them)."""
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mp4"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    return None


def _box_resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image
    if frame.shape[:2] == tuple(size):
        return frame
    return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.Resampling.BOX), dtype=np.uint8)


def _check_dims(w: int, h: int, max_pixels: int, max_side: int) -> None:
    if w < 1 or h < 1 or w * h > max_pixels or max(w, h) > max_side:
        raise ValueError(f"the video is {w}x{h} pixels; the limit is {max_pixels:,} pixels and "
                         f"{max_side} pixels a side")


def decode_video(path: str | os.PathLike, size: tuple[int, int], *, max_bytes: int = MAX_VIDEO_BYTES,
                 max_frames: int = MAX_FRAMES, max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE,
                 timeout_s: float = DECODE_TIMEOUT_S, allow_npy: bool = False) -> np.ndarray:
    """Decode a GIF or MP4 (H.264) file, or a .npy clip when ``allow_npy``: t h w 3 uint8 at ``size`` (h, w).

    Refused (ValueError): over ``max_bytes``, not one of those formats by its magic bytes, more
    than ``max_frames`` frames, frames over ``max_pixels`` / ``max_side``, decoding past
    ``timeout_s``, a damaged or truncated file.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise ValueError("not a video file")
        n = path.stat().st_size
        if n == 0:
            raise ValueError("the video file is empty")
        if n > max_bytes:
            raise ValueError(f"the video file is larger than {max_bytes / 2**20:g} MB")
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        raise ValueError("the video file cannot be read") from None
    kind = sniff(head)
    if kind == "npy" and not allow_npy:
        kind = None
    if kind is None:
        raise ValueError("not a GIF or MP4 file" + (" (or .npy clip)" if allow_npy else ""))
    if kind == "gif":
        frames = _decode_gif(path, size, max_frames, max_pixels, max_side, timeout_s)
    elif kind == "mp4":
        frames = _decode_mp4(path, size, max_frames, max_pixels, max_side, timeout_s)
    else:
        frames = _load_npy(path, size, max_frames, max_pixels, max_side)
    if len(frames) == 0:
        raise ValueError("the video has no frames")
    return frames


# ----------------------------------------------------------------------------- GIF (Pillow)
def _decode_gif(path, size, max_frames, max_pixels, max_side, timeout_s) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    deadline = time.monotonic() + timeout_s
    out = []
    try:
        with Image.open(path, formats=["GIF"]) as im:
            for i in range(max_frames + 1):
                if i:
                    try:
                        im.seek(i)
                    except EOFError:
                        break
                _check_dims(*im.size, max_pixels, max_side)           # before this frame's pixels
                if i == max_frames:
                    raise ValueError(f"the video has more than {max_frames} frames")
                if time.monotonic() > deadline:
                    raise ValueError(f"decoding took longer than {timeout_s:g} s")
                out.append(_box_resize(np.asarray(im.convert("RGB"), dtype=np.uint8), size))
    except Image.DecompressionBombError:
        raise ValueError(f"the video claims too many pixels; the limit is {max_pixels:,} pixels") from None
    except UnidentifiedImageError:
        raise ValueError("not a GIF or MP4 file") from None
    except (OSError, SyntaxError, EOFError, struct_error, IndexError, TypeError):
        raise ValueError("the GIF file is damaged or truncated and cannot be decoded") from None
    return np.stack(out)


# ----------------------------------------------------------------------------- MP4 (ffmpeg subprocess)
def ffmpeg_exe() -> str:
    import imageio_ffmpeg
    return imageio_ffmpeg.get_ffmpeg_exe()


# Options before -i: no stdin, errors only, no probing of the format (forced demuxer), local files only.
_INPUT = ["-hide_banner", "-nostdin", "-protocol_whitelist", "file", "-f", "mp4"]
_STREAM = re.compile(r"Stream #\d+:\d+[^:]*: Video: (\w+)[^\n]*?, (\d{1,6})x(\d{1,6})")


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([ffmpeg_exe(), *args], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout_s, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
    except subprocess.TimeoutExpired:
        raise ValueError(f"decoding took longer than {timeout_s:g} s") from None


def probe_mp4(path, timeout_s: float = DECODE_TIMEOUT_S) -> tuple[str, int, int]:
    """(codec, width, height) of the first video stream, read by ffmpeg's mp4 demuxer (nothing decoded)."""
    r = _run([*_INPUT, "-i", str(path)], timeout_s)
    m = _STREAM.search(r.stderr.decode("utf-8", "replace"))
    if m is None:
        raise ValueError("the MP4 file is damaged or has no video stream")
    return m.group(1), int(m.group(2)), int(m.group(3))


def _decode_mp4(path, size, max_frames, max_pixels, max_side, timeout_s) -> np.ndarray:
    t0 = time.monotonic()
    codec, w, h = probe_mp4(path, timeout_s)
    if codec != "h264":
        raise ValueError(f"only H.264 MP4 video is accepted, not {codec}")
    _check_dims(w, h, max_pixels, max_side)
    oh, ow = size
    left = max(0.1, timeout_s - (time.monotonic() - t0))
    r = _run([*_INPUT, "-c:v", "h264", "-threads", "1", "-i", str(path), "-map", "0:v:0", "-an", "-sn", "-dn",
              "-xerror", "-loglevel", "error", "-frames:v", str(max_frames + 1),
              "-vf", f"scale={ow}:{oh}:flags=area", "-pix_fmt", "rgb24", "-f", "rawvideo", "pipe:1"], left)
    frame_bytes = oh * ow * 3
    if r.returncode != 0 or len(r.stdout) % frame_bytes:
        raise ValueError("the MP4 file is damaged or truncated and cannot be decoded")
    n = len(r.stdout) // frame_bytes
    if n > max_frames:
        raise ValueError(f"the video has more than {max_frames} frames")
    return np.frombuffer(r.stdout, np.uint8).reshape(n, oh, ow, 3).copy()


# ----------------------------------------------------------------------------- .npy (command line)
def _load_npy(path, size, max_frames, max_pixels, max_side) -> np.ndarray:
    from numpy.lib import format as npf
    try:
        with open(path, "rb") as f:
            version = npf.read_magic(f)
            read = npf.read_array_header_1_0 if version == (1, 0) else npf.read_array_header_2_0
            shape, fortran, dtype = read(f)                        # the header only: shape and dtype
    except (ValueError, OSError, SyntaxError):
        raise ValueError("the .npy file is damaged") from None
    if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"a .npy clip must be uint8 (t, h, w, 3), got {dtype} {tuple(shape)}")
    if shape[0] > max_frames:
        raise ValueError(f"the video has more than {max_frames} frames")
    _check_dims(shape[2], shape[1], max_pixels, max_side)
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        raise ValueError("the .npy file is damaged or truncated") from None
    return np.stack([_box_resize(np.ascontiguousarray(fr), size) for fr in arr]) if len(arr) else arr


# ----------------------------------------------------------------------------- masks
MASK_FORMATS = ("PNG", "GIF", "WEBP", "BMP")


def read_mask(path: str | os.PathLike | bytes, size: tuple[int, int], *, max_bytes: int = 2 * 2**20,
              max_pixels: int = MAX_PIXELS, max_side: int = MAX_SIDE) -> np.ndarray:
    """A mask image (a file, or its bytes) -> h w bool at ``size``, nearest neighbour; True = regenerate / may move.

    An image with transparency (some alpha < 255, as a drawn ``gr.ImageMask`` layer) is read by its
    alpha (alpha >= 128 = True); an opaque one by its brightness (white = True, luminance >= 128).
    Size and header are checked before any pixel is decoded; only lossless formats (PNG, GIF, WebP, BMP).
    """
    from PIL import Image, UnidentifiedImageError

    from .editing import resize_mask
    if isinstance(path, (bytes, bytearray)):
        n, path = len(path), io.BytesIO(path)
    else:
        path = Path(path)
        try:
            n = path.stat().st_size if path.is_file() else -1
        except OSError:
            n = -1
    if n < 0:
        raise ValueError("not a mask image file")
    if n == 0 or n > max_bytes:
        raise ValueError(f"the mask image must be 1 byte to {max_bytes / 2**20:g} MB")
    try:
        with Image.open(path, formats=list(MASK_FORMATS)) as im:
            w, h = im.size
            if w < 1 or h < 1 or w * h > max_pixels or max(w, h) > max_side:
                raise ValueError(f"the mask image is {w}x{h} pixels; the limit is {max_pixels:,} pixels")
            im.seek(0)
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                alpha = np.asarray(im.convert("RGBA"), dtype=np.uint8)[..., 3]
                if alpha.min() < 255:
                    return resize_mask(alpha >= 128, size)
            lum = np.asarray(im.convert("L"), dtype=np.uint8)
            return resize_mask(lum >= 128, size)
    except Image.DecompressionBombError:
        raise ValueError(f"the mask image claims too many pixels; the limit is {max_pixels:,}") from None
    except UnidentifiedImageError:
        raise ValueError(f"not a mask image ({', '.join(MASK_FORMATS)})") from None
    except (OSError, SyntaxError, EOFError, struct_error):
        raise ValueError("the mask image is damaged or truncated and cannot be decoded") from None
