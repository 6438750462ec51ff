"""``stunet eval``: the prompt set, the summary, the table and the command end to end."""
from __future__ import annotations

import json

import pytest

from stunet.shapes import evaluate as E
from stunet.shapes import world


def test_default_prompts_cover_the_vocabulary():
    prompts = E.default_prompts()
    assert 24 <= len(prompts) <= 40 and len(set(prompts)) == len(prompts)
    specs = [world.parse_caption(p) for p in prompts]
    assert {s.color for s in specs} == set(world.COLORS)
    assert {s.shape for s in specs} == set(world.SHAPES)
    assert {s.motion for s in specs} == set(world.MOTIONS)
    assert {s.speed for s in specs} == {None, *world.SPEEDS}
    assert all(not (s.motion == "spinning" and s.shape == "circle") for s in specs)
    assert E.default_prompts() == prompts                      # fixed


def test_load_prompts(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# comment\na red circle moving left\n\na blue square quickly spinning\n")
    assert E.load_prompts(f) == ["a red circle moving left", "a blue square quickly spinning"]
    f.write_text("a red circle moving left\na red blob dancing\n")
    with pytest.raises(ValueError, match=":2:"):
        E.load_prompts(f)


def test_select_prompts(tmp_path):
    from stunet.shapes.prompts import select_prompts
    assert select_prompts() == E.default_prompts()
    assert select_prompts(None, 3) == E.default_prompts()[:3]
    f = tmp_path / "p.txt"
    f.write_text("a red circle moving left\na blue square quickly spinning\n")
    assert select_prompts(f, 1) == ["a red circle moving left"]
    assert select_prompts(f, 10) == ["a red circle moving left", "a blue square quickly spinning"]
    with pytest.raises(ValueError, match="--limit must be >= 1"):
        select_prompts(f, 0)


def test_ceiling_is_perfect_on_the_default_prompts():
    r = E.evaluate_model(None, prompts=E.default_prompts(), seeds=1)
    c = r["ceiling"]
    assert c["n"] == 30 and all(c[m] == 100.0 for m in E.METRICS)
    assert r["model"] is None and r["passed"] is None
    table = E.format_table(r)
    assert "| colour | - | 100.0 |" in table and "| bouncing | 3 |" in table
    # the periodic-motion report rides along: every spin, orbit and bounce prompt right, none reversed
    p = r["periodic"]["ceiling"]
    assert p["overall"]["n"] == 9 and p["overall"]["right_pct"] == 100.0 and p["overall"]["reversed"] == 0
    assert "model" not in r["periodic"]
    assert "| spinning | quick | triangle | 8.0 | 0.50 | 1 | 100.0 | 0.0 | 0 | 0 |" in table
    json.dumps({k: v for k, v in r.items()})


def test_summary_and_verdicts():
    from stunet.shapes.metrics import evaluate_clip
    good = [evaluate_clip(world.make_clip(world.parse_caption(p), 32, 32, seed=i).video, p)
            for i, p in enumerate(E.default_prompts()[:10])]
    # the same clips scored against the wrong colour: colour drops to 0, the rest stays
    wrong = [evaluate_clip(world.make_clip(world.parse_caption(p), 32, 32, seed=i).video,
                           p.replace(p.split()[1], "white" if p.split()[1] != "white" else "red"))
             for i, p in enumerate(E.default_prompts()[:10])]
    g, w = E.summarize(good), E.summarize(wrong)
    assert g["color"] == 100.0 and w["color"] == 0.0 and w["shape"] == 100.0 and w["all"] == 0.0
    assert E._verdicts(w, g) == {"color": False, "shape": True, "motion": True, "coherence": True}
    # within target but more than MAX_GAP below the ceiling fails
    lower = dict(g, shape=94.0)
    assert E._verdicts(lower, g)["shape"] is False
    assert E._verdicts(lower, dict(g, shape=96.0))["shape"] is True


def test_cli_end_to_end_on_the_tiny_checkpoint(tiny_checkpoint, tmp_path, capsys):
    js, md = tmp_path / "r.json", tmp_path / "r.md"
    rc = E.main(["--model", str(tiny_checkpoint), "--limit", "2", "--seeds", "1", "--steps", "2",
                 "--json", str(js), "--markdown", str(md), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "| metric | model % | ceiling % | gap | target | result |" in out
    for label in ("colour", "shape", "motion", "coherence"):
        assert f"| {label} |" in out
    assert "2 prompts x 1 seeds, 8 frames of 16x16" in out
    r = json.loads(js.read_text())
    assert len(r["clips"]["model"]) == 2 and len(r["clips"]["ceiling"]) == 2
    assert r["settings"]["steps"] == 2 and r["model"]["n"] == 2
    assert md.read_text().startswith("| metric |")
    # random weights do not pass: --strict says so
    rc = E.main(["--model", str(tiny_checkpoint), "--limit", "1", "--seeds", "1", "--steps", "1", "--quiet",
                 "--strict"])
    assert rc == 1


def test_cli_through_stunet_main(tiny_checkpoint, capsys):
    from stunet.cli import main
    assert main(["eval", "--model", str(tiny_checkpoint), "--ceiling-only", "--limit", "3", "--seeds", "1"]) == 0
    out = capsys.readouterr().out
    assert "| colour | - | 100.0 |" in out and "3 prompts x 1 seeds, 8 frames of 16x16" in out


def test_cli_first_seed_picks_held_out_seeds(tmp_path):
    js = tmp_path / "r.json"
    assert E.main(["--ceiling-only", "--limit", "2", "--seeds", "2", "--first-seed", "100", "--quiet",
                   "--json", str(js)]) == 0
    r = json.loads(js.read_text())
    assert r["settings"]["seeds"] == [100, 101]
    assert sorted({c["seed"] for c in r["clips"]["ceiling"]}) == [100, 101]


def test_cli_errors(tmp_path, capsys):
    assert E.main(["--ceiling-only", "--first-seed", "-1", "--quiet"]) == 1
    assert "--first-seed" in capsys.readouterr().err
    assert E.main(["--model", str(tmp_path / "nope"), "--quiet"]) == 1
    assert "no model" in capsys.readouterr().err
    bad = tmp_path / "bad.txt"
    bad.write_text("hello world\n")
    assert E.main(["--ceiling-only", "--prompts", str(bad)]) == 1


def test_evaluate_model_keeps_the_training_mode(tiny_model, tiny_tokenizer):
    tiny_model.train()
    try:
        r = E.evaluate_model(tiny_model, tiny_tokenizer, ["a red circle moving left"], seeds=[0], steps=1,
                             guidance=1.0, ceiling=False, keep_clips=True)
        assert tiny_model.training
    finally:
        tiny_model.eval()
    (p, s, v), = r["videos"]["model"]
    assert v.shape == (8, 16, 16, 3) and v.dtype.name == "uint8"
    assert r["ceiling"] is None and set(r["pass"]) == set(E.METRICS)
