"""Safe decoding of uploaded clips and masks (stunet.video_decode): round trips, and hostile files made
here (an HLS playlist named .mp4, truncated files, a 10 000-frame GIF, huge-pixel GIFs) -> clear errors."""
import os
import struct
import threading
import time

import numpy as np
import pytest

from stunet import video_decode as vd
from stunet.video import write_video

SIZE = (16, 16)


def gif_bytes(frames: int, screen=(1, 1), frame_size=(1, 1)) -> bytes:
    """A GIF written by hand: ``frames`` 1-pixel images (LZW: clear, 0, end) on a ``screen`` (w, h)."""
    out = b"GIF89a" + struct.pack("<HHBBB", screen[0], screen[1], 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    fw, fh = frame_size
    block = b"\x2c" + struct.pack("<HHHHB", 0, 0, fw, fh, 0) + b"\x02\x02\x44\x01\x00"
    return out + block * frames + b"\x3b"


def _clip(t=12, side=32, seed=0):
    rng = np.random.default_rng(seed)
    v = np.zeros((t, side, side, 3), np.uint8)
    for i in range(t):                                       # a moving square: compresses, decodes checkably
        v[i, 8:20, i:i + 12] = rng.integers(100, 256, 3)
    return v


@pytest.fixture
def tmp(tmp_path):
    return tmp_path


def _box_down(v, size):
    return np.stack([vd._box_resize(f, size) for f in v])


# Spies instead of wall-clock bounds: how much work a refusal did, counted, so a loaded machine cannot fail them.
def ffmpeg_runs(monkeypatch) -> list[float]:
    """The timeout of every ffmpeg subprocess run from now on."""
    runs, run = [], vd._run
    monkeypatch.setattr(vd, "_run", lambda args, timeout_s: runs.append(timeout_s) or run(args, timeout_s))
    return runs


def frames_decoded(monkeypatch) -> list[int]:
    """One entry per GIF frame decoded and resized from now on."""
    out, resize = [], vd._box_resize
    monkeypatch.setattr(vd, "_box_resize", lambda frame, size: out.append(1) or resize(frame, size))
    return out


def frames_visited(monkeypatch) -> list[int]:
    """The index of every GIF frame Pillow is asked to seek to from now on (frame 0 is where a file opens)."""
    from PIL import GifImagePlugin
    out, seek = [0], GifImagePlugin.GifImageFile.seek
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "seek", lambda im, i: out.append(i) or seek(im, i))
    return out


def pixel_loads(monkeypatch) -> list[tuple[int, int]]:
    """The size of every image whose pixels Pillow decodes (``ImageFile.load``) from now on."""
    from PIL import ImageFile
    out, load = [], ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: out.append(im.size) or load(im))
    return out


@pytest.mark.parametrize("fmt", ["mp4", "gif"])
def test_round_trip(tmp, fmt):
    v = _clip()
    path = write_video(tmp / f"in.{fmt}", v, scale=2, fmt=fmt)
    out = vd.decode_video(path, SIZE)
    assert out.shape == (12, 16, 16, 3) and out.dtype == np.uint8
    want = _box_down(v, SIZE).astype(int)
    assert np.abs(out.astype(int) - want).mean() < 6


def test_the_extension_is_ignored_magic_bytes_decide(tmp):
    v = _clip()
    gif = write_video(tmp / "a.gif", v, scale=1)
    renamed = tmp / "a.mp4"
    os.rename(gif, renamed)
    assert vd.decode_video(renamed, SIZE).shape[0] == 12          # a GIF named .mp4 is decoded as a GIF
    png = tmp / "x.gif"
    from PIL import Image
    Image.fromarray(v[0]).save(png, format="PNG")
    with pytest.raises(ValueError, match="not a GIF or MP4"):
        vd.decode_video(png, SIZE)
    txt = tmp / "y.mp4"
    txt.write_text("hello")
    with pytest.raises(ValueError, match="not a GIF or MP4"):
        vd.decode_video(txt, SIZE)


def test_hls_playlist_named_mp4_is_refused_without_reading_what_it_names(tmp):
    """The playlist's segment is a FIFO: opening it for reading is seen by a writer polling with O_NONBLOCK."""
    fifo = tmp / "secret.ts"
    os.mkfifo(fifo)
    playlist = tmp / "clip.mp4"
    playlist.write_text("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
                        f"#EXTINF:1.0,\nfile://{fifo}\n#EXTINF:1.0,\n{fifo}\n#EXT-X-ENDLIST\n")
    opened, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)     # succeeds only while a reader has it open
            except OSError:
                time.sleep(0.005)
                continue
            opened.append(1)
            os.write(fd, b"SECRET")
            os.close(fd)

    th = threading.Thread(target=watch, daemon=True)
    th.start()
    try:
        with pytest.raises(ValueError, match="not a GIF or MP4") as e1:
            vd.decode_video(playlist, SIZE)
        # past the magic-byte check too: ffmpeg with the forced mp4 demuxer and the file-only whitelist refuses it
        with pytest.raises(ValueError, match="damaged or has no video stream") as e2:
            vd._decode_mp4(playlist, SIZE, 128, 10**6, 4096, 10.0)
        with pytest.raises(ValueError):
            vd.probe_mp4(playlist, 10.0)
    finally:
        stop.set()
        th.join(2)
    assert opened == []
    assert "SECRET" not in str(e1.value) + str(e2.value)


def test_truncated_mp4_is_refused(tmp, monkeypatch):
    path = write_video(tmp / "a.mp4", _clip(40), scale=2)
    n = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(n * 6 // 10)
    runs = ffmpeg_runs(monkeypatch)
    with pytest.raises(ValueError, match="damaged or truncated"):      # ffmpeg's own error, not the timeout
        vd.decode_video(path, SIZE)
    assert 1 <= len(runs) <= 2 and all(t <= vd.DECODE_TIMEOUT_S for t in runs)   # header, then the frames


def test_truncated_gif_is_refused(tmp):
    path = write_video(tmp / "a.gif", _clip(12), scale=4)
    data = path.read_bytes()
    cut = tmp / "cut.gif"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="damaged or truncated"):
        vd.decode_video(cut, SIZE)


def test_ten_thousand_frame_gif_is_refused_at_the_frame_cap(tmp, monkeypatch):
    path = tmp / "long.gif"
    path.write_bytes(gif_bytes(10_000))
    assert path.stat().st_size < vd.MAX_VIDEO_BYTES                  # the frame cap refuses it, not the size cap
    resized, seen = frames_decoded(monkeypatch), frames_visited(monkeypatch)
    with pytest.raises(ValueError, match=f"more than {vd.MAX_FRAMES} frames"):
        vd.decode_video(path, SIZE)
    assert len(resized) == vd.MAX_FRAMES and max(seen) == vd.MAX_FRAMES     # stopped one frame past the cap
    monkeypatch.undo()
    path.write_bytes(gif_bytes(7))
    assert vd.decode_video(path, SIZE).shape == (7, 16, 16, 3)       # the same kind of file, short: decoded


@pytest.mark.parametrize("screen,frame", [((65535, 65535), (1, 1)), ((1, 1), (65535, 65535)),
                                          ((5000, 1), (1, 1))])
def test_huge_pixel_gif_is_refused_before_decoding(tmp, screen, frame, monkeypatch):
    path = tmp / "big.gif"
    path.write_bytes(gif_bytes(2, screen, frame))
    assert path.stat().st_size < 100
    loads = pixel_loads(monkeypatch)
    with pytest.raises(ValueError, match="pixels"):
        vd.decode_video(path, SIZE)
    assert loads == []                                                  # refused from the headers alone


def test_size_cap_and_empty_file(tmp):
    path = tmp / "a.gif"
    path.write_bytes(gif_bytes(3))
    with pytest.raises(ValueError, match="larger than"):
        vd.decode_video(path, SIZE, max_bytes=50)
    empty = tmp / "e.mp4"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        vd.decode_video(empty, SIZE)
    with pytest.raises(ValueError, match="not a video file"):
        vd.decode_video(tmp / "missing.mp4", SIZE)


def test_mp4_frame_and_pixel_caps(tmp):
    path = write_video(tmp / "a.mp4", _clip(12), scale=2)
    with pytest.raises(ValueError, match="more than 8 frames"):
        vd.decode_video(path, SIZE, max_frames=8)
    with pytest.raises(ValueError, match="pixels"):
        vd.decode_video(path, SIZE, max_pixels=32 * 32)


def test_only_h264_mp4(tmp):
    import subprocess
    src = write_video(tmp / "a.mp4", _clip(8), scale=2)
    other = tmp / "mpeg4.mp4"
    subprocess.run([vd.ffmpeg_exe(), "-v", "error", "-i", str(src), "-c:v", "mpeg4", str(other)], check=True)
    with pytest.raises(ValueError, match="only H.264"):
        vd.decode_video(other, SIZE)


def test_npy_only_when_allowed_and_never_pickles(tmp):
    v = _clip(8)
    path = tmp / "c.npy"
    np.save(path, v)
    with pytest.raises(ValueError, match="not a GIF or MP4"):
        vd.decode_video(path, SIZE)
    out = vd.decode_video(path, (32, 32), allow_npy=True)
    assert np.array_equal(out, v)
    obj = tmp / "o.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="uint8"):
        vd.decode_video(obj, SIZE, allow_npy=True)
    wrong = tmp / "w.npy"
    np.save(wrong, np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"\(t, h, w, 3\)"):
        vd.decode_video(wrong, SIZE, allow_npy=True)


def test_read_mask_alpha_or_brightness_nearest_neighbour(tmp):
    from PIL import Image
    white = np.zeros((64, 64), np.uint8)
    white[16:32, 8:40] = 255
    Image.fromarray(white).save(tmp / "m.png")
    want = np.zeros(SIZE, bool)
    want[4:8, 2:10] = True
    assert np.array_equal(vd.read_mask(tmp / "m.png", SIZE), want)
    rgba = np.zeros((64, 64, 4), np.uint8)                          # a drawn layer: transparent, black strokes
    rgba[16:32, 8:40, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp / "layer.png")
    assert np.array_equal(vd.read_mask(tmp / "layer.png", SIZE), want)
    opaque = np.dstack([np.repeat(white[..., None], 3, -1), np.full((64, 64), 255, np.uint8)])
    Image.fromarray(opaque, "RGBA").save(tmp / "opaque.png")        # opaque RGBA: by brightness
    assert np.array_equal(vd.read_mask(tmp / "opaque.png", SIZE), want)
    (tmp / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    with pytest.raises(ValueError, match="damaged|not a mask"):
        vd.read_mask(tmp / "bad.png", SIZE)
    with pytest.raises(ValueError, match="not a mask image file"):
        vd.read_mask(tmp / "none.png", SIZE)
