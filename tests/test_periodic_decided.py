"""scripts/periodic_decided.py (issue 35 diagnosis): failure kinds, the step a verdict is decided, the run."""
import math

from conftest import load_script

from stunet.pipeline import Pipeline
from stunet.shapes import periodic, world

pd = load_script("periodic_decided")


def _verdict(prompt, period, direction):
    spec = world.parse_caption(prompt)
    reading = periodic.PeriodicReading(spec.motion, measurable=not math.isnan(period), period=period,
                                       direction=direction)
    return periodic.compare(reading, spec)


def test_failure_kinds():
    spec = world.parse_caption("a red square spinning")
    want = spec.period
    assert pd.failure(_verdict("a red square spinning", want, "clockwise")) in ("right", "reversed")
    right_dir = periodic.EXPECTED_DIRECTION["spinning"]
    assert pd.failure(_verdict("a red square spinning", want, right_dir)) == "right"
    assert pd.failure(_verdict("a red square spinning", want * 3, right_dir)) == "too slow"
    assert pd.failure(_verdict("a red square spinning", want / 3, right_dir)) == "too fast"
    assert pd.failure(_verdict("a red square spinning", want, periodic.OPPOSITE[right_dir])) == "reversed"
    assert pd.failure(_verdict("a red square spinning", math.nan, None)) == "not measurable"


def test_periodic_prompts_are_the_scorable_ones():
    ps = pd.periodic_prompts()
    assert ps and all(world.parse_caption(p).motion in ("bouncing", "spinning", "orbiting") for p in ps)


def test_a_clip_is_read_at_every_step_and_summarised(tiny_model, tiny_tokenizer):
    pipe = Pipeline(tiny_model, tiny_tokenizer, "fp32")
    rows = [pd.run_clip(pipe, p, 0, i, steps=3) for i, p in enumerate(pd.periodic_prompts()[:2])]
    for r in rows:
        assert len(r["steps_right"]) == 3 and 0 <= r["decided_at"] <= 3
    s = pd.summarise(rows)
    assert s["clips"] == 2 and len(s["per_step_right_pct"]) == 3
    assert s["per_step_decided_pct"][-1] == 100.0            # the last x0-hat's verdict is the clip's own
    assert "| step |" in pd.format_md(s, {"seeds": 1, "guidance": 3.0, "steps": 3, "precision": "fp32"})
