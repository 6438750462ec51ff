"""``stunet generate`` with --video/--mask (inpainting), --image/--region (cinemagraph), --video/--strength
(video-to-video) on the tiny checkpoint (16x16, 8 frames)."""
import numpy as np
import pytest
from PIL import Image

from stunet.cli import main
from stunet.video import read_image, write_video


def _clip(t=8):
    return np.random.default_rng(0).integers(0, 256, (t, 16, 16, 3), dtype=np.uint8)


def _mask_png(path):
    m = np.zeros((64, 64), np.uint8)
    m[16:32, 8:40] = 255                   # at 16x16: rows 4-7, columns 2-9
    Image.fromarray(m).save(path)
    want = np.zeros((16, 16), bool)
    want[4:8, 2:10] = True
    return want


def test_inpaint_from_npy_with_a_png_mask(tmp_path, capsys, tiny_checkpoint):
    video = _clip(10)                                        # 10 frames: over the 8-frame window (MultiDiffusion)
    np.save(tmp_path / "in.npy", video)
    want = _mask_png(tmp_path / "mask.png")
    out = tmp_path / "out.npy"
    code = main(["generate", "a red circle moving left", "--model", str(tiny_checkpoint), "--steps", "2",
                 "--video", str(tmp_path / "in.npy"), "--mask", str(tmp_path / "mask.png"), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    res = np.load(out)
    assert res.shape == (10, 16, 16, 3)
    assert np.array_equal(res[:, ~want], video[:, ~want])       # exact outside the (resized) mask
    assert not np.array_equal(res[:, want], video[:, want])
    assert "PSNR of the given pixels" in capsys.readouterr().err


def test_cinemagraph_from_png_with_a_region(tmp_path, capsys, tiny_checkpoint):
    img = np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "img.png")
    want = _mask_png(tmp_path / "region.png")
    out = tmp_path / "out.npy"
    code = main(["generate", "a red square spinning", "--model", str(tiny_checkpoint), "--steps", "2",
                 "--image", str(tmp_path / "img.png"), "--region", str(tmp_path / "region.png"), "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    res = np.load(out)
    image = read_image(tmp_path / "img.png", (16, 16))
    assert res.shape == (8, 16, 16, 3)
    assert np.array_equal(res[0], image)
    assert (res[:, ~want] == image[~want][None]).all()


def test_video_to_video_from_gif(tmp_path, capsys, tiny_checkpoint):
    gif = write_video(tmp_path / "in.gif", _clip(), scale=2)
    out = tmp_path / "out.npy"
    code = main(["generate", "a blue circle moving left", "--model", str(tiny_checkpoint), "--steps", "4",
                 "--video", str(gif), "--strength", "0.5", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert np.load(out).shape == (8, 16, 16, 3)
    assert "video_to_video: 8 frames, 2 steps" in capsys.readouterr().err


@pytest.mark.parametrize("extra,code,msg", [
    (["--strength", "1.5"], 1, "strength must be"),
    ([], 2, "--mask (inpainting) or --strength"),
    (["--mask", "m.png", "--strength", "0.5"], 2, "one of them"),
    (["--region", "m.png"], 2, "--region needs --image"),
    (["--image", "m.png", "--mask", "m.png"], 2, "--mask needs --video"),
])
def test_bad_edit_arguments(tmp_path, capsys, tiny_checkpoint, extra, code, msg):
    np.save(tmp_path / "in.npy", _clip())
    _mask_png(tmp_path / "m.png")
    extra = [str(tmp_path / a) if a.endswith(".png") else a for a in extra]
    args = ["generate", "a red circle", "--model", str(tiny_checkpoint), "--steps", "1",
            "--video", str(tmp_path / "in.npy"), "--out", str(tmp_path / "o.npy"), *extra]
    if "--region" in extra or "--image" in extra:
        args.remove("--video"), args.remove(str(tmp_path / "in.npy"))
    assert main(args) == code
    assert msg in capsys.readouterr().err


def test_undecodable_video_is_a_clear_error(tmp_path, capsys, tiny_checkpoint):
    (tmp_path / "in.mp4").write_text("#EXTM3U\nfile:///etc/passwd\n")
    _mask_png(tmp_path / "m.png")
    assert main(["generate", "a red circle", "--model", str(tiny_checkpoint), "--video", str(tmp_path / "in.mp4"),
                 "--mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "o.npy")]) == 1
    err = capsys.readouterr().err
    assert "not a GIF or MP4 file" in err and "root:" not in err
