"""The command line: info, generate (mp4 / gif / npy, prompt files, unknown words, image-to-video)."""
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from stunet.cli import main
from stunet.video import read_video_frames


def test_info_json_lists_the_pyramid(capsys):
    assert main(["info", "--preset", "shapes", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [(l["channels"], l["frames"], l["height"], l["width"], l["temporal_attention"]) for l in info["levels"]] \
        == [(32, 32, 32, 32, False), (64, 16, 16, 16, False), (128, 8, 8, 8, True)]
    assert info["parameters"] > 1_000_000


def test_info_text_and_model_dir(capsys, tiny_checkpoint):
    assert main(["info", "--model", str(tiny_checkpoint), "--frames", "16"]) == 0
    out = capsys.readouterr().out
    assert "level1" in out and "parameters:" in out
    assert main(["info", "--preset", "nope"]) == 1


@pytest.mark.integration
def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "stunet", "info", "--preset", "tiny", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["levels"][0]["frames"] == 8


@pytest.mark.parametrize("ext", ["mp4", "gif", "npy"])
def test_generate_writes_each_format(tmp_path, capsys, tiny_checkpoint, ext):
    out = tmp_path / f"clip.{ext}"
    code = main(["generate", "a red circle moving left", "--model", str(tiny_checkpoint), "--steps", "2",
                 "--out", str(out), "--scale", "2"])
    assert code == 0 and capsys.readouterr().out.strip() == str(out)
    frames = read_video_frames(out)
    assert frames.shape[0] == 8
    if ext == "npy":
        assert frames.dtype == np.uint8 and frames.shape == (8, 16, 16, 3)


def test_generate_same_seed_same_npy(tmp_path, tiny_checkpoint):
    for name in ("a", "b"):
        main(["generate", "a blue square spinning", "--model", str(tiny_checkpoint), "--steps", "2", "--seed", "4",
              "--out", str(tmp_path / f"{name}.npy")])
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


def test_prompts_file_names_sort_in_file_order(tmp_path, capsys, tiny_checkpoint):
    f = tmp_path / "prompts.txt"
    f.write_text("a red circle bouncing\n\na blue square moving up\na white triangle growing\n")
    code = main(["generate", "--prompts", str(f), "--out-dir", str(tmp_path / "out"), "--format", "npy",
                 "--model", str(tiny_checkpoint), "--steps", "1"])
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["000-a-red-circle-bouncing.npy", "001-a-blue-square-moving-up.npy",
                     "002-a-white-triangle-growing.npy"]


def test_unknown_words_warn_and_all_unknown_fails(tmp_path, capsys, tiny_checkpoint):
    code = main(["generate", "a red zeppelin", "--model", str(tiny_checkpoint), "--steps", "1",
                 "--out", str(tmp_path / "a.npy")])
    err = capsys.readouterr().err
    assert code == 0 and "zeppelin" in err and "knows:" in err
    code = main(["generate", "zeppelin über alles", "--model", str(tiny_checkpoint), "--steps", "1",
                 "--out", str(tmp_path / "b.npy")])
    err = capsys.readouterr().err
    assert code == 1 and "None of the prompt's words are known" in err and not (tmp_path / "b.npy").exists()


def test_image_to_video_and_bad_inputs(tmp_path, capsys, tiny_checkpoint):
    png = tmp_path / "first.png"
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(png)
    assert main(["generate", "a red circle", "--image", str(png), "--model", str(tiny_checkpoint), "--steps", "1",
                 "--out", str(tmp_path / "i.npy")]) == 0
    (tmp_path / "fake.png").write_text("not an image")
    assert main(["generate", "a red circle", "--image", str(tmp_path / "fake.png"), "--model",
                 str(tiny_checkpoint), "--out", str(tmp_path / "j.npy")]) == 1
    assert "not an image" in capsys.readouterr().err
    assert main(["generate", "a red circle", "--model", str(tiny_checkpoint), "--out", str(tmp_path / "x.avi")]) == 2
    assert main(["generate", "a red circle", "--model", str(tmp_path / "missing")]) == 1
