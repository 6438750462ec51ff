"""scripts/periodic_failures.py (issue 35 diagnosis): the failure kinds of an eval run's periodic clips."""
from conftest import load_script

from stunet.shapes import world
from stunet.shapes.metrics import evaluate_clip

pf = load_script("periodic_failures")


def record(drawn: str, prompt: str, seed: int = 0) -> dict:
    """An eval record: the world's clip of ``drawn`` scored against ``prompt`` (as stunet eval's --json)."""
    clip = world.make_clip(world.parse_caption(drawn), seed=seed)
    return {"prompt": prompt, **evaluate_clip(clip.video, prompt).to_dict()}


def test_each_failure_kind_from_world_clips():
    assert pf.failure(record("a red square spinning", "a red square spinning"), "spinning") == "right"
    assert pf.failure(record("a red square slowly spinning", "a red square spinning"), "spinning") == "too slow"
    assert pf.failure(record("a red square quickly spinning", "a red square spinning"), "spinning") == "too fast"
    assert pf.failure(record("a red circle orbiting", "a red circle bouncing"), "bouncing") \
        == "read as another motion"


def test_tally_and_table_count_every_periodic_clip_once():
    clips = [record("a red square spinning", "a red square spinning"),
             record("a red square slowly spinning", "a red square spinning"),
             record("a red circle orbiting", "a red circle bouncing"),
             record("a red circle moving left", "a red circle moving left")]            # not periodic: left out
    rows = pf.tally(clips)
    assert set(rows) == {("spinning", "normal"), ("bouncing", "normal")}
    assert rows[("spinning", "normal")]["counts"] == {"right": 1, "too slow": 1}
    assert rows[("bouncing", "normal")]["read_as"] == {"orbiting": 1}
    slow = rows[("spinning", "normal")]["periods"][0]
    assert slow[0] / slow[1] > 1.25
    table = pf.markdown(rows, "x.json")
    assert "| spinning | normal | 2 | 1 | 0 | 0 | 1 | 0 | - | median x" in table
    assert "| bouncing | normal | 1 | 0 | 1 | 0 | 0 | 0 | orbiting 1 | - |" in table
