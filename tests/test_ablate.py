"""``stunet ablate`` and ``stunet generate --ablate`` / ``stunet info --parts`` on the tiny checkpoint."""
import json

import numpy as np
import pytest

from stunet import ablate
from stunet.cli import main as cli


def test_role_parts_and_defaults(tiny_model):
    p = ablate.parse("word:colour")
    assert p.name == "word:colour" and "red" in p.words and "circle" not in p.words
    names = [p.name for p in ablate.default_parts(tiny_model.config)]
    assert names == ["tattn:mid.0.0=identity", "tattn:all=identity", "tattn:all=uniform", "tconv:enc0", "tconv:dec0",
                     "tconv:all", "word:colour", "word:shape", "word:motion", "stride:4"]


def test_compare_counts_paired_changes():
    base = [{"colour": True, "shape": True, "motion": True, "coherence": True, "all": True, "periodic": True,
             "reversed": False, "prompt": "a red square spinning"},
            {"colour": True, "shape": False, "motion": False, "coherence": True, "all": False, "periodic": None,
             "reversed": None, "prompt": "a red circle moving left"}]
    abl = [{**base[0], "motion": False, "all": False, "periodic": False, "reversed": True},
           {**base[1], "shape": True}]
    c = ablate.compare(abl, base)
    assert c["motion"]["stay_right"] == 0.0 and c["motion"]["broken"] == 1 and c["motion"]["fixed"] == 0
    assert c["shape"]["fixed"] == 1 and c["colour"]["stay_right"] == 100.0
    assert c["periodic"]["clips"] == 1 and c["reversed"] == 1 and c["per_motion"]["spinning"] == 0.0
    text = ablate.sentence(ablate.parse("tconv:all"), c)
    assert text.startswith("With the residual temporal convolutions at every level skipped")
    assert "1 of 1 reverse" in text


def test_ablate_command_writes_table_and_resumes(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "abl"
    argv = ["ablate", "--model", str(tiny_checkpoint), "--out", str(out), "--limit", "3", "--seeds", "1",
            "--parts", "tconv:all", "--parts", "word:motion", "--batch", "2", "--steps", "2", "--precision", "fp32",
            "--quiet"]
    assert cli(argv) == 0
    table = (out / "ablate.md").read_text()
    assert "| `tconv:all` |" in table and "| `word:motion` |" in table and "unablated (% right)" in table
    result = json.loads((out / "ablate.json").read_text())
    assert [r["part"] for r in result["parts"]] == ["tconv:all", "word:motion"]
    assert result["settings"]["seeds"] == [0] and result["parts"][0]["sentence"].endswith(".")
    lines = (out / "clips.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 3 * 3                                  # settings, then (none + 2 parts) x 3 clips
    assert cli(argv) == 0                                           # a rerun resumes: nothing new generated
    assert (out / "clips.jsonl").read_text().splitlines() == lines


@pytest.mark.parametrize("part, message", [("tconv:mid", "not a level with temporal convolutions"),
                                           ("word:zebra", "not in the model's vocabulary"),
                                           ("patch-attn:mid.0.0=a red circle", "switch something off")])
def test_ablate_refuses_bad_parts_before_sampling(tiny_checkpoint, tmp_path, capsys, part, message):
    assert cli(["ablate", "--model", str(tiny_checkpoint), "--out", str(tmp_path / "x"), "--parts", part]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x" / "clips.jsonl").exists()


def test_generate_ablate_and_info_parts(tiny_checkpoint, tmp_path, capsys):
    assert cli(["info", "--model", str(tiny_checkpoint), "--parts"]) == 0
    listed = capsys.readouterr().out
    assert "tattn:mid.0.0=uniform" in listed and "tconv:all" in listed
    base = ["generate", "a red square quickly spinning", "--model", str(tiny_checkpoint), "--steps", "2",
            "--precision", "fp32"]
    plain, none, abl = (tmp_path / f"{n}.npy" for n in ("plain", "none", "abl"))
    assert cli(base + ["--out", str(plain)]) == 0
    assert cli(base + ["--out", str(none), "--ablate", "none"]) == 0
    assert cli(base + ["--out", str(abl), "--ablate", "tattn:all=uniform", "--ablate", "word:red"]) == 0
    assert np.array_equal(np.load(plain), np.load(none)) and not np.array_equal(np.load(plain), np.load(abl))
    capsys.readouterr()
    assert cli(base + ["--out", str(tmp_path / "bad.npy"), "--ablate", "word:blue"]) == 1
    assert "no such word in the prompt" in capsys.readouterr().err and not (tmp_path / "bad.npy").exists()
