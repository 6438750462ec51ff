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


def _of(motion):
    return [p for p in E.default_prompts() if world.parse_caption(p).motion == motion]


def _bouncing():
    return _of("bouncing")


def test_identical_runs_pair_exactly():
    r = P.paired_scores(_run(), _run())
    assert r["pairs"] == 180 and r["same_noise"] and r["settings_differ"] == {}
    rows = {x["name"]: x for x in r["rows"]}
    assert [x["name"] for x in r["rows"][:6]] == ["colour", "shape", "motion", "coherence", "all four",
                                                 P.PERIODIC_POOLED]
    assert all(x["difference"] == 0 and x["p"] == 1.0 for x in r["rows"])
    assert rows["bouncing"]["clips"] == 18 and rows["bouncing"]["bar"] == P.NOT_LOST
    assert rows[P.PERIODIC_POOLED]["clips"] == 54 and rows[P.PERIODIC_POOLED]["bar"] == P.NON_INFERIOR
    assert rows["moving left"]["holds"] is None and rows["all four"]["holds"] is None   # informational rows
    # no discordant clip still leaves an interval: Tango's half-width is z^2 / (n + z^2)
    z2 = 1.959963984540054 ** 2
    assert rows["motion"]["ci95"] == pytest.approx([-100 * z2 / (180 + z2), 100 * z2 / (180 + z2)], abs=1e-6)


def test_verdict_needs_enough_pairs_to_show_non_inferiority():
    # 6 seeds: 54 periodic pairs cannot show "within 3 points" even when every clip agrees ...
    r = P.paired_scores(_run(), _run())
    assert not r["holds"] and r["verdict"]["failed"] == [P.PERIODIC_POOLED]
    assert r["verdict"]["line"].startswith("Verdict against the reference (180 pairs): FAIL: periodic (pooled) (interval from -6.6")
    # ... 12 seeds (108) still cannot; 14 seeds (126 > 124) can
    assert P.paired_scores(_run(seeds=12), _run(seeds=12))["verdict"]["failed"] == [P.PERIODIC_POOLED]
    assert P.paired_scores(_run(seeds=14), _run(seeds=14))["holds"]


def test_verdict_passes_a_candidate_no_worse_than_its_reference():
    seeds = 12
    ref_wrong = {(p, s) for m in P.PERIODIC for p in _of(m) for s in range(2)}          # 18 periodic clips
    cand_wrong = {(_of("spinning")[0], 5), (_of("moving up")[0], 3)}                    # two others
    r = P.paired_scores(_run(seeds, lose=cand_wrong, settings={"steps": 8}), _run(seeds, lose=ref_wrong,
                        settings={"model": "full"}))
    rows = {x["name"]: x for x in r["rows"]}
    assert (rows[P.PERIODIC_POOLED]["only_model"], rows[P.PERIODIC_POOLED]["only_reference"]) == (18, 1)
    assert rows[P.PERIODIC_POOLED]["ci95"][0] > -3 and rows["motion"]["ci95"][0] > -3
    assert r["holds"] and r["verdict"]["passed"] and r["verdict"]["failed"] == []
    line = r["verdict"]["line"]
    assert line.startswith("Verdict against full (360 pairs): PASS")
    assert line in P.format_paired(r).splitlines()


def test_a_one_sided_loss_fails_the_interval_bar():
    lost = {(p, s) for p in E.default_prompts()[:5] for s in range(2)}      # 10 linear clips lost, none gained
    r = P.paired_scores(_run(seeds=14, lose=lost), _run(seeds=14))
    motion = r["rows"][2]
    assert (motion["only_model"], motion["only_reference"]) == (0, 10)
    assert motion["p"] == pytest.approx(2 / 2 ** 10)
    assert motion["ci95"][0] < -3 < motion["difference"] and motion["holds"] is False
    assert not r["holds"] and r["verdict"]["failed"] == ["motion"]
    assert "FAIL: motion (interval from -4." in r["verdict"]["line"]
    assert "| motion | 420 | 100.0 | 97.6 | -2.4 | -4." in P.format_paired(r)
    # reversed roles: the same split is a gain, and the verdict passes
    g = P.paired_scores(_run(seeds=14), _run(seeds=14, lose=lost))
    assert g["rows"][2]["difference"] == pytest.approx(100 * 10 / 420) and g["holds"]


def test_a_lost_periodic_motion_fails_even_when_the_pool_holds():
    seeds = 12
    ref_wrong = {(p, s) for m in ("spinning", "orbiting") for p in _of(m) for s in range(4)}   # 24 gained
    lost = {(p, s) for p in _bouncing() for s in range(2)}                                       # 6 bouncing lost
    r = P.paired_scores(_run(seeds, lose=lost), _run(seeds, lose=ref_wrong))
    rows = {x["name"]: x for x in r["rows"]}
    assert (rows["bouncing"]["only_model"], rows["bouncing"]["only_reference"]) == (0, 6)
    assert rows["bouncing"]["p"] == pytest.approx(2 / 2 ** 6) and rows["bouncing"]["holds"] is False
    assert rows[P.PERIODIC_POOLED]["holds"] and rows["spinning"]["holds"] and rows["motion"]["holds"]
    assert r["verdict"]["failed"] == ["bouncing"]
    assert r["verdict"]["line"].endswith("FAIL: bouncing lost (0 clips won, 6 lost, McNemar p = 0.031).")
    assert "| bouncing | 36 | 100.0 | 83.3 | -16.7 |" in P.format_paired(r)
    # five of 36 lost is p = 0.0625: not a loss by itself
    five = set(sorted(lost)[:5])
    assert {x["name"]: x for x in P.paired_scores(_run(seeds, lose=five), _run(seeds, lose=ref_wrong))["rows"]}[
        "bouncing"]["holds"] is True


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
    # two pairs cannot show non-inferiority: the verdict line says FAIL and names the rows
    assert p["verdict"]["passed"] is False and "colour" in p["verdict"]["failed"]
    assert p["verdict"]["line"] in out.splitlines() and "(2 pairs): FAIL: colour" in p["verdict"]["line"]
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
