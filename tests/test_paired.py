"""``stunet eval --against``: a model held clip by clip against a reference run (``stunet.shapes.paired``)."""
import json

import pytest

from stunet.shapes import evaluate as E
from stunet.shapes import paired as P
from stunet.shapes import world

FIELDS = ("color_ok", "shape_ok", "motion_ok", "coherent")


def _run(seeds=6, lose=(), settings=None):
    """A synthetic eval result: every clip right except the (prompt, seed) pairs in ``lose`` (motion wrong)."""
    clips = [{"prompt": p, "seed": s, "caption": p, **{f: True for f in FIELDS}}
             for p in E.default_prompts() for s in range(seeds)]
    for c in clips:
        if (c["prompt"], c["seed"]) in lose:
            c["motion_ok"] = False
    return {"settings": {"steps": 25, "sampler": "dpm++", "batch_size": 8, "frames": 32, "size": 32,
                         **(settings or {})}, "clips": {"model": clips}}


def _bouncing():
    return [p for p in E.default_prompts() if world.parse_caption(p).motion == "bouncing"]


def test_identical_runs_pair_exactly_and_hold():
    r = P.paired_scores(_run(), _run())
    assert r["pairs"] == 180 and r["holds"] and r["same_noise"] and r["settings_differ"] == {}
    rows = {x["name"]: x for x in r["rows"]}
    assert [x["name"] for x in r["rows"][:5]] == ["colour", "shape", "motion", "coherence", "all four"]
    assert all(x["difference"] == 0 and x["p"] == 1.0 for x in r["rows"])
    assert rows["bouncing"]["clips"] == 18 and rows["bouncing"]["max_drop"] == P.MAX_PERIODIC_DROP
    assert rows["moving left"]["holds"] is None                         # non-periodic motions: no bar of their own


def test_one_lost_periodic_clip_in_eighteen_fails_the_bar():
    lost = {(_bouncing()[0], 0)}
    r = P.paired_scores(_run(lose=lost), _run(), max_drop=3, max_periodic_drop=5)
    rows = {x["name"]: x for x in r["rows"]}
    assert rows["bouncing"]["difference"] == pytest.approx(-100 / 18)
    assert (rows["bouncing"]["only_model"], rows["bouncing"]["only_reference"]) == (0, 1)
    assert rows["bouncing"]["holds"] is False and rows["motion"]["holds"] is True   # -0.56 points of 180 clips
    assert r["holds"] is False
    assert "| bouncing | 18 | 100.0 | 94.4 | -5.6 | 0 | 1 | 1.000 | FAILS (>= -5) |" in P.format_paired(r)
    # the same loss is within a wider periodic bar
    assert P.paired_scores(_run(lose=lost), _run(), max_periodic_drop=6)["holds"] is True


def test_discordant_clips_decide_the_p_value():
    lost = {(p, s) for p in E.default_prompts()[:5] for s in range(2)}      # 10 clips lost, none gained
    r = P.paired_scores(_run(lose=lost), _run())
    motion = r["rows"][2]
    assert (motion["only_model"], motion["only_reference"]) == (0, 10)
    assert motion["p"] == pytest.approx(2 / 2 ** 10)
    assert "| motion | 180 | 100.0 | 94.4 | -5.6 | 0 | 10 | 0.002 * | FAILS (>= -3) |" in P.format_paired(r)
    # reversed roles: the gain is the same size, and no bar fails
    g = P.paired_scores(_run(), _run(lose=lost))
    assert g["rows"][2]["difference"] == pytest.approx(100 * 10 / 180) and g["holds"]


def test_runs_on_different_clips_are_refused_and_different_noise_is_said():
    with pytest.raises(ValueError, match="not on the same clips"):
        P.paired_scores(_run(seeds=6), _run(seeds=3))
    with pytest.raises(ValueError, match="not on the same clips"):
        P.paired_scores(_run(seeds=3), _run(seeds=6))
    r = P.paired_scores(_run(settings={"steps": 8, "sampler": "ddim"}), _run())
    assert r["same_noise"] and r["settings_differ"] == {"steps": [8, 25], "sampler": ["ddim", "dpm++"]}
    r = P.paired_scores(_run(settings={"batch_size": 4}), _run())
    assert not r["same_noise"] and "did not start from the same noise" in P.format_paired(r)


def test_cli_against_a_reference_run(tiny_checkpoint, tmp_path, capsys):
    ref = tmp_path / "ref.json"
    common = ["--model", str(tiny_checkpoint), "--limit", "2", "--seeds", "1", "--steps", "2", "--quiet"]
    assert E.main(common + ["--json", str(ref)]) == 0
    capsys.readouterr()
    out_json = tmp_path / "again.json"
    assert E.main(common + ["--against", str(ref), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "| against the reference | clips |" in out and "Paired on 2 (prompt, seed) clips" in out
    p = json.loads(out_json.read_text())["paired"]
    assert p["pairs"] == 2 and all(r["difference"] == 0 for r in p["rows"])   # same model, same noise: same clips
    # other seeds than the reference's: refused, with the reason
    assert E.main(common + ["--first-seed", "5", "--against", str(ref)]) == 1
    assert "not on the same clips" in capsys.readouterr().err
    # ... and before generating anything: no model is even needed to refuse them
    assert E.main(["--model", str(tmp_path / "none"), "--limit", "3", "--seeds", "1", "--against", str(ref)]) == 1
    assert "not on the same clips" in capsys.readouterr().err


def test_cli_against_refuses_bad_references(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert E.main(["--limit", "1", "--seeds", "1", "--against", str(bad), "--quiet"]) == 1
    assert "not JSON" in capsys.readouterr().err
    ceiling = tmp_path / "ceiling.json"
    assert E.main(["--ceiling-only", "--limit", "1", "--seeds", "1", "--quiet", "--json", str(ceiling)]) == 0
    capsys.readouterr()
    assert E.main(["--limit", "1", "--seeds", "1", "--against", str(ceiling), "--quiet"]) == 1
    assert "no per-clip model scores" in capsys.readouterr().err
    assert E.main(["--ceiling-only", "--against", str(ceiling), "--quiet"]) == 1
    assert "--ceiling-only" in capsys.readouterr().err
