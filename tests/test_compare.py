"""``stunet compare`` (issue 18): the prompt set, scoring, aggregates, report files and the command line.

Fast and seeded: a "model" that draws the world's own clips stands for a perfect STUNet against a cascade of the
world's true keyframes, cross-faded (``compare_fakes``); the command line runs the tiny STUNet against a random tiny
cascade (``stunet.cascade.testing``).
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from compare_fakes import KEYFRAMES, WorldCascade, WorldModel, crossfade

from stunet.shapes import compare as C
from stunet.shapes import periodic, world


def test_prompt_set_covers_every_periodic_shape_and_speed():
    prompts = C.compare_prompts()
    specs = [world.parse_caption(p) for p in prompts]
    assert len(set(prompts)) == len(prompts) == 28 and C.compare_prompts() == prompts          # fixed
    for motion in periodic.PERIODIC_MOTIONS:
        shapes = {"square", "triangle"} if motion == "spinning" else set(world.SHAPES)   # a circle's spin: unmeasurable
        assert {(s.shape, s.speed) for s in specs if s.motion == motion} == \
            {(sh, sp) for sh in shapes for sp in (None, "slowly", "quickly")}
    assert {s.motion for s in specs if s.motion in world.LINEAR} == set(world.LINEAR)
    assert all(periodic.scorable(s) or s.motion in world.LINEAR for s in specs)
    quick = C.compare_prompts(quick=True)
    q = [world.parse_caption(p) for p in quick]
    assert len(quick) == 14 and {s.motion for s in q} == set(periodic.PERIODIC_MOTIONS) | set(world.LINEAR)
    assert {(s.shape, s.speed) for s in q if s.motion == "spinning"} >= {("square", "quickly"), ("triangle", "quickly")}


@pytest.fixture(scope="module")
def perfect():
    """A model that outputs the world's true clips against a cascade of true keyframes, cross-faded."""
    cas = WorldCascade()
    return C.run(WorldModel(), cas, C.compare_prompts(quick=True), seeds=1, batch_size=5, keep_clips=True), cas


def test_a_model_of_true_clips_is_always_right(perfect):
    r, _ = perfect
    assert r["models"] == ["stunet", "cascade", "oracle", "world"]
    for m in ("stunet", "world"):
        ov = r["overall"][m]
        assert ov["n"] == 10 and ov["right_pct"] == 100.0 and ov["reversed"] == 0
        assert ov["mean_rate_error"] < 0.01
        assert all(r["sanity"][m][k] == 100.0 for k in ("color", "shape", "linear_motion", "coherence"))
    assert r["sanity"]["stunet"]["linear_clips"] == 4 and r["sanity"]["stunet"]["clips"] == 14
    # the cascade of true keyframes aliases the quick square spin (60 degrees a keyframe reads as -30: reversed)
    row = next(x for x in r["periodic"] if x["motion"] == "spinning" and x["speed"] == "quick" and x["shape"] == "square")
    assert row["cycles_per_keyframe"] == pytest.approx(4 / 6)
    assert row["models"]["cascade"]["reversed"] == 1 and row["models"]["cascade"]["right_pct"] == 0.0
    assert row["better"]["winner"] == "stunet" and row["better"]["right_points"] == 100.0
    assert r["sanity_bar"]["holds"] is True and r["better_overall"]["winner"] == "stunet"


def test_oracle_rows_fill_the_worlds_true_keyframes(perfect):
    r, cas = perfect
    assert cas.fills == 2 * 3                                    # 3 batches: sample_batch's fill + the oracle's
    oracle = [x for x in r["rows"] if x["model"] == "oracle"]
    assert len(oracle) == 14 and all(x["world_seed"] == C.world_seed(i, 0) for i, x in enumerate(oracle))
    # the oracle's clip is the cross-fade of the world clip's frames 0, 4, ..., 28 (rendered with the clip's seed)
    (p, s, video), = [v for v in r["videos"]["oracle"] if v[0] == "a red circle bouncing"]
    i = C.compare_prompts(quick=True).index(p)
    true = C.true_clip(p, i, s, 32)
    np.testing.assert_array_equal(video, crossfade(true[None, list(KEYFRAMES)])[0])
    np.testing.assert_array_equal(video[list(KEYFRAMES)], true[list(KEYFRAMES)])
    np.testing.assert_array_equal(dict(((q, t), v) for q, t, v in r["videos"]["world"])[(p, s)], true)


def test_deterministic(perfect):
    again = C.run(WorldModel(), WorldCascade(), C.compare_prompts(quick=True), seeds=1, batch_size=5)
    assert again["rows"] == perfect[0]["rows"]


def _row(model, prompt, right=True, err=0.0, measurable=True, reversed_=False, color=True, shape=True, motion=True):
    spec = world.parse_caption(prompt)
    r = {"model": model, "prompt": prompt, "motion": spec.motion, "speed": periodic.SPEED_NAMES[spec.speed],
         "shape": spec.shape, "linear": spec.motion in world.LINEAR, "periodic": periodic.scorable(spec),
         "cycles_per_keyframe": periodic.cycles_per_keyframe(spec) if periodic.scorable(spec) else None,
         "color_ok": color, "shape_ok": shape, "motion_ok": motion, "coherent": True}
    if r["periodic"]:
        r.update(measurable=measurable, right=right and measurable, rate_error=err if measurable else None,
                 reversed=reversed_)
    return r


def test_aggregates_of_hand_made_rows():
    spin, bounce, lin = "a red square quickly spinning", "a blue circle bouncing", "a green circle moving left"
    rows = [_row("stunet", spin, err=0.1), _row("stunet", spin, right=False, err=0.5),
            _row("cascade", spin, right=False, err=0.5, reversed_=True), _row("cascade", spin, measurable=False),
            _row("stunet", bounce, err=0.02), _row("cascade", bounce, err=0.06),
            _row("stunet", lin), _row("stunet", lin),
            _row("cascade", lin, motion=False), _row("cascade", lin, color=False)]
    a = C.aggregate(rows)
    assert a["models"] == ["stunet", "cascade"]
    s, c = a["sanity"]["stunet"], a["sanity"]["cascade"]
    assert s["clips"] == 5 and s["linear_clips"] == 2 and s["linear_motion"] == 100.0 and s["bar"]
    assert c["linear_motion"] == 50.0 and c["color"] == 80.0 and c["shape"] == 100.0 and not c["bar"]
    assert a["sanity_bar"] == {"threshold": 90.0, "metrics": ["color", "shape", "linear_motion"], "model": "cascade",
                               "holds": False}
    spin_row, bounce_row = a["periodic"]                          # spinning first, then bouncing
    assert (spin_row["motion"], spin_row["speed"], spin_row["shape"]) == ("spinning", "quick", "square")
    assert bounce_row["shape"] == "any" and bounce_row["period"] == 16.0
    assert spin_row["cycles_per_keyframe"] == pytest.approx(4 / 6) and bounce_row["cycles_per_keyframe"] == 0.25
    st, ca = spin_row["models"]["stunet"], spin_row["models"]["cascade"]
    assert (st["n"], st["measurable"], st["right_pct"], st["reversed"]) == (2, 2, 50.0, 0)
    assert st["mean_rate_error"] == pytest.approx(0.3) and st["max_rate_error"] == pytest.approx(0.5)
    assert (ca["n"], ca["measurable"], ca["right_pct"], ca["reversed"]) == (2, 1, 0.0, 1)
    assert ca["mean_rate_error"] == pytest.approx(0.5)            # the unmeasurable clip is left out of the error
    assert spin_row["better"]["winner"] == "stunet" and spin_row["better"]["right_points"] == 50.0
    assert spin_row["better"]["rate_error_points"] == pytest.approx(20.0)
    # same right %: the lower rate error wins, by its points
    assert bounce_row["better"]["winner"] == "stunet" and bounce_row["better"]["rate_error_points"] == pytest.approx(4.0)
    assert C.better_text(bounce_row["better"]) == "STUNet (4 pts less rate error)"
    assert a["by_cycles"]["stunet"] == [[0.25, pytest.approx(0.02), 1, 100.0], [pytest.approx(4 / 6), pytest.approx(0.3), 2, 50.0]]
    assert a["by_motion_cycles"]["stunet"] == {"spinning": [a["by_cycles"]["stunet"][1]],
                                               "bouncing": [a["by_cycles"]["stunet"][0]]}
    assert a["by_motion_cycles"]["cascade"]["spinning"] == [[pytest.approx(4 / 6), pytest.approx(0.5), 1, 0.0]]
    assert a["overall"]["cascade"]["n"] == 3 and a["overall"]["cascade"]["reversed"] == 1
    table = C.format_table({**a, "settings": {"prompts": 3, "seeds": [0], "frames": 32, "keyframes": list(KEYFRAMES),
                                              "keyframe_interval": 4}})
    assert "Sanity bar **does not hold**" in table and "linear motion 50 %" in table
    assert "| spinning | quick | square | 6.0 | 0.67 | 2 | 50.0 | 0.0 | 30.0 | 50.0 | 0 / 1 | STUNet (+50 pts right, " \
           "20 pts less rate error) |" in table


def test_a_tie_and_a_cascade_win():
    p = "a red circle slowly orbiting"
    a = C.aggregate([_row("stunet", p, err=0.05), _row("cascade", p, err=0.052)])
    assert a["periodic"][0]["better"]["winner"] == "tie" and C.better_text(a["periodic"][0]["better"]) == "tie"
    a = C.aggregate([_row("stunet", p, right=False, err=0.4), _row("cascade", p, err=0.05)])
    assert a["periodic"][0]["better"]["winner"] == "cascade"
    assert C.better_text(a["periodic"][0]["better"]) == "cascade (+100 pts right, 35 pts less rate error)"


def test_outputs_json_table_and_plot_with_the_nyquist_line(perfect, tmp_path):
    r, _ = perfect
    paths = C.write_outputs(r, tmp_path / "out")
    data = json.loads(paths["json"].read_text())
    assert "videos" not in data and len(data["rows"]) == 4 * 14
    assert {x["model"] for x in data["rows"]} == set(C.MODELS) - {"reference"} and data["sanity_bar"]["holds"] is True
    table = paths["table"].read_text()
    assert "Sanity bar **holds**" in table and "oracle right %" in table and "| all |" in table
    assert "At or past the keyframes' Nyquist limit" in table
    from PIL import Image
    with Image.open(paths["plot"]) as im:
        assert im.format == "PNG" and im.size[0] >= 400
    ax = C.rate_error_figure(r).axes[0]
    nyquist = [ln for ln in ax.lines if list(ln.get_xdata()) == [C.NYQUIST, C.NYQUIST]]
    assert len(nyquist) == 1 and "Nyquist" in nyquist[0].get_label()
    labels = [ln.get_label() for ln in ax.lines]
    assert all(C.LABELS[m] in labels for m in ("stunet", "cascade", "oracle"))
    assert all(m in labels for m in ("spinning", "orbiting", "bouncing"))              # the motions' markers
    # one line per model and periodic motion, through that motion's rates only
    cascade_color = next(ln.get_color() for ln in ax.lines if ln.get_label() == "cascade")
    drawn = [ln for ln in ax.lines if ln.get_color() == cascade_color and len(ln.get_xdata())]
    assert len(drawn) == 3
    assert sorted(sorted(np.round(ln.get_xdata(), 6)) for ln in drawn) == \
        sorted(sorted(c for c, *_ in pts) for pts in r["by_motion_cycles"]["cascade"].values())
    assert "cycles per keyframe interval" in ax.get_xlabel()


def test_measure_and_pictures():
    p = "a blue square quickly spinning"
    clip = C.true_clip(p, 0, 0, 32)
    m = C.measure(clip, p)
    assert m["scorable"] and m["right"] and m["direction"] == "clockwise" and m["period"] == pytest.approx(6, rel=0.02)
    assert "right" in m["text"] and "period 6.0" in m["text"]
    aliased = C.measure(crossfade(clip[None, list(KEYFRAMES)])[0], p)
    assert aliased["reversed"] and "REVERSED" in aliased["text"]
    assert not C.measure(clip, "a blue circle moving left")["scorable"]
    assert "not a shapes-world caption" in C.measure(clip, "hello")["text"]
    assert "no orientation" in C.measure(clip, "a red circle spinning")["reason"]
    marked = C.mark_keyframes(clip, KEYFRAMES)
    assert (marked[4, 0, 0] == C.KEYFRAME_RGB).all() and (marked[5] == clip[5]).all()
    both = C.side_by_side(clip, marked)
    assert both.shape == (32, 32, 66, 3) and (both[:, :, :32] == clip).all() and (both[:, :, 34:] == marked).all()
    with pytest.raises(ValueError):
        C.side_by_side(clip, clip[:8])
    img, rows = C.xt_pair(clip, clip, KEYFRAMES, scale=2, gap=4, tick=3)
    assert img.shape == (64, 64 + 4 + 3 + 64 + 3, 3) and all(0 <= r < 32 for r in rows)
    assert (img[8:10, 68:71] == C.KEYFRAME_RGB).all() and not (img[2:4, 68:71] == C.KEYFRAME_RGB).all()


# ----------------------------------------------------------------------------- command line
@pytest.fixture
def cascade_dir(tmp_path):
    """A random tiny cascade checkpoint (``stunet.cascade.testing``: 16x16, 32 frames, 2 DDIM steps)."""
    from stunet.cascade.testing import save_tiny_cascade
    return save_tiny_cascade(tmp_path / "cascade", seed=0)


def test_cli_writes_the_report(tmp_path, capsys, tiny_checkpoint, cascade_dir):
    from stunet.cli import main
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red square quickly spinning\na blue circle bouncing\na green circle moving left\n")
    out = tmp_path / "cmp"
    assert main(["compare", "--stunet", str(tiny_checkpoint), "--cascade", str(cascade_dir), "--seeds", "1",
                 "--out", str(out), "--prompts", str(prompts), "--steps", "2", "--precision", "fp32", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "Sanity bar" in printed and "| spinning | quick | square |" in printed
    assert sorted(p.name for p in out.iterdir()) == ["rate_error.png", "results.json", "table.md"]
    data = json.loads((out / "results.json").read_text())
    assert [x["model"] for x in data["rows"]].count("oracle") == 3 and data["settings"]["steps"] == 2
    assert data["settings"]["frames"] == 32 and data["sanity_bar"]["holds"] in (True, False)
    assert (out / "table.md").read_text().strip() == printed.strip()
    linear = C.format_table(C.run(WorldModel(), WorldCascade(), ["a red circle moving left"], 1, oracle=False))
    assert "No periodic prompts" in linear and "| periodic |" not in linear


def test_cli_bad_input_exits_1(tmp_path, capsys, tiny_checkpoint):
    from stunet.cli import main
    base = ["--seeds", "1", "--out", str(tmp_path / "o"), "--quick"]
    assert main(["compare", "--stunet", str(tmp_path / "nope"), "--cascade", str(tiny_checkpoint)] + base) == 1
    assert "no such directory" in capsys.readouterr().err
    assert main(["compare", "--stunet", str(tiny_checkpoint), "--cascade", str(tmp_path)] + base) == 1
    assert "--cascade" in capsys.readouterr().err                    # a folder without config.json
    # a STUNet checkpoint is not a cascade
    assert main(["compare", "--stunet", str(tiny_checkpoint), "--cascade", str(tiny_checkpoint)] + base) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "cascade" in err and "Traceback" not in err
    assert main(["compare", "--stunet", str(tiny_checkpoint), "--cascade", str(tiny_checkpoint), "--seeds", "0",
                 "--out", str(tmp_path / "o")]) == 1
    assert not (tmp_path / "o").exists()


def test_better_when_one_side_is_not_measurable():
    p = "a red square quickly spinning"
    a = C.aggregate([_row("stunet", p, right=False, err=0.3), _row("cascade", p, measurable=False)])
    b = a["periodic"][0]["better"]
    assert b["winner"] == "stunet" and b["rate_error_points"] is None
    assert C.better_text(b) == "STUNet (the cascade not measurable)"


def test_a_reference_stunet_is_reported_beside_the_pair_but_outside_the_verdict(perfect):
    prompts = C.compare_prompts(quick=True)[:5]
    ref = WorldModel()
    r = C.run(WorldModel(), WorldCascade(), prompts, seeds=1, batch_size=5, reference=ref)
    assert r["models"] == ["stunet", "reference", "cascade", "oracle", "world"] and ref.calls == 1
    rows = {m: [{k: v for k, v in x.items() if k != "model"} for x in r["rows"] if x["model"] == m]
            for m in ("stunet", "reference")}
    assert len(rows["reference"]) == 5 and rows["reference"] == rows["stunet"]     # same generators, same clips
    assert r["settings"]["reference"] is True and r["seconds"]["reference"] >= 0
    table = C.format_table(r)
    assert "| reference STUNet (its own budget) | 5 |" in table and "reference right %" in table
    alone = C.run(WorldModel(), WorldCascade(), prompts, seeds=1, batch_size=5)
    assert [x for x in r["rows"] if x["model"] != "reference"] == alone["rows"]  # the others do not move
    assert r["better_overall"] == alone["better_overall"]


def test_cli_reference_flag(tmp_path, capsys, tiny_checkpoint, cascade_dir):
    from stunet.cli import main
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red square quickly spinning\n")
    out = tmp_path / "cmp"
    base = ["compare", "--stunet", str(tiny_checkpoint), "--cascade", str(cascade_dir), "--seeds", "1",
            "--out", str(out), "--prompts", str(prompts), "--steps", "2", "--precision", "fp32", "--no-oracle", "--quiet"]
    assert main(base + ["--reference", str(cascade_dir)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --reference:") and "keyframe cascade" in err and not out.exists()
    assert main(base + ["--reference", str(tiny_checkpoint)]) == 0
    data = json.loads((out / "results.json").read_text())
    assert [x["model"] for x in data["rows"]] == ["stunet", "reference", "cascade"]
    assert data["settings"]["reference_dir"] == str(tiny_checkpoint)


def test_paired_difference_interval_and_mcnemar():
    assert C.mcnemar_p(0, 0) == 1.0 and C.mcnemar_p(5, 0) == pytest.approx(2 * 0.5 ** 5)
    assert C.mcnemar_p(3, 3) == 1.0 and C.mcnemar_p(10, 2) == pytest.approx(2 * sum(
        __import__("math").comb(12, i) for i in range(3)) / 2 ** 12)
    prompts = ["a red square quickly spinning", "a blue circle bouncing", "a green circle orbiting"]
    rows = []
    for seed in range(4):
        for i, p in enumerate(prompts):
            a = _row("stunet", p, err=0.05)
            c = _row("cascade", p, right=(i == 2), err=0.05 if i == 2 else 0.4)
            rows += [{**a, "seed": seed}, {**c, "seed": seed}]
    rows.append({**_row("stunet", prompts[0]), "seed": 9})                 # no cascade clip: not a pair
    rows.append({**_row("cascade", "a red circle moving left"), "seed": 0})  # linear: not periodic
    p = C.paired(rows)
    assert p["pairs"] == 12 and (p["only_a"], p["only_b"]) == (8, 0)
    assert p["right_points"] == pytest.approx(100 * 8 / 12) and p["p"] == pytest.approx(2 * 0.5 ** 8)
    lo, hi = p["ci95"]
    assert 0 < lo < p["right_points"] < hi <= 100 and C.paired(rows) == p          # seeded: reproducible
    assert p["rate_error_pairs"] == 12 and p["rate_error_points"] == pytest.approx(100 * 0.35 * 8 / 12)
    assert "beyond chance (p < 0.05)" in C.paired_text(p) and "McNemar p = 0.00781" in C.paired_text(p)
    same = C.paired([{**r, "model": m} for r in rows if r["model"] == "cascade" for m in ("stunet", "cascade")])
    assert same["right_points"] == 0 and same["p"] == 1.0 and "not distinguishable" in C.paired_text(same)
    a = C.aggregate(rows)
    assert a["paired"] == p and set(a["paired_by_motion"]) == {"spinning", "orbiting", "bouncing"}
    assert a["paired_by_motion"]["orbiting"]["right_points"] == 0
    assert C.paired([r for r in rows if r["model"] == "stunet"]) is None


def test_the_claim_is_stated_plainly_held_contradicted_or_not_shown():
    prompts = ["a red square quickly spinning", "a blue circle bouncing", "a green circle orbiting"]
    lin = "a yellow circle moving left"

    def result(stunet_right, cascade_right, reference=None, cascade_linear=True):
        rows = []
        for seed in range(4):
            for i, p in enumerate(prompts):
                k = 3 * seed + i                                            # 12 pairs
                rows += [{**_row("stunet", p, right=k < stunet_right, err=0.05 if k < stunet_right else 0.4), "seed": seed},
                         {**_row("cascade", p, right=k < cascade_right, err=0.05 if k < cascade_right else 0.4),
                          "seed": seed}]
                if reference is not None:
                    rows.append({**_row("reference", p, right=k < reference, err=0.05), "seed": seed})
            rows.append({**_row("cascade", lin, motion=cascade_linear), "seed": seed})
        return {**C.aggregate(rows), "rows": rows}

    held = C.claim_text(result(12, 2))
    assert held.startswith("**Lumiere's claim holds at this budget**") and "+83.3 pts right" in held
    assert "STUNet's rates were closer" in held and "reference" not in held
    against = C.claim_text(result(1, 11))
    assert against.startswith("**Lumiere's claim is contradicted at this budget**") and "cascade's rates were" in against
    unclear = C.claim_text(result(6, 8, reference=12))
    assert unclear.startswith("**Lumiere's claim is not supported at this budget**: the cascade got 16.7 pts more")
    assert "cannot tell from chance" in unclear and "McNemar p = 0.5" in unclear
    assert "Outside the verdict, the reference STUNet (its own, larger budget) got 100 %" in unclear
    assert "neither got more" in C.claim_text(result(6, 6))
    assert C.claim_text(result(12, 2, cascade_linear=False)).startswith("No verdict on Lumiere's claim: the cascade fails")
    assert C.claim_text({"paired": None}).startswith("No verdict")
    table = C.format_table({**result(12, 2), "settings": {"prompts": 4, "seeds": [0, 1, 2, 3], "frames": 32,
                                                          "keyframes": list(KEYFRAMES), "keyframe_interval": 4}})
    assert table.splitlines()[2].startswith("**Lumiere's claim holds")
