"""The README's Python snippets, run as written against the launched studio (tiny checkpoint, a random tiny
cascade for ``/compare``), so they cannot drift from the API: integration tier.

Every ```python block of README.md is taken at test time and run in order in one namespace (the later API
snippets use the first one's ``client``), in a folder holding the files they name (``mask.png``, ``in.gif``,
``still.png``); the only substitution is the server's URL. Each ``Client.predict`` call is recorded, so the test
checks which endpoints the snippets call and that the steps and guidance they pass are ``stunet.defaults``'."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import launched_app
from PIL import Image

from stunet import defaults
from stunet.video import write_video

ROOT = Path(__file__).resolve().parent.parent
README_URL = '"http://127.0.0.1:7860/"'          # the URL the README's snippets connect to
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


def readme_snippets() -> list[str]:
    """The ```python blocks of README.md, in order."""
    return re.findall(r"^```python\n(.*?)^```$", (ROOT / "README.md").read_text(), re.S | re.M)


def write_inputs(folder: Path) -> None:
    """The files the snippets name: a moving-square GIF, a still image, a mask (white = regenerate)."""
    clip = np.zeros((8, 16, 16, 3), np.uint8)
    for i in range(8):
        clip[i, 4:10, i:i + 6] = (230, 40, 40)
    write_video(folder / "in.gif", clip, scale=2)
    Image.fromarray(clip[0]).save(folder / "still.png")
    mask = np.zeros((64, 64), np.uint8)
    mask[16:40, 8:48] = 255
    Image.fromarray(mask).save(folder / "mask.png")


@pytest.fixture(scope="module")
def url(tiny_checkpoint, tmp_path_factory):
    from stunet.cascade import load_pipeline
    from stunet.cascade.testing import save_tiny_cascade
    cascade = load_pipeline(save_tiny_cascade(tmp_path_factory.mktemp("tiny-cascade"), steps=2), precision="fp32")
    with launched_app(tiny_checkpoint, cascade=cascade) as (_, u):      # STUNET_MODEL: the library snippet's too
        yield u


def test_the_readme_api_example_uses_the_default_steps_and_guidance():
    first = next(s for s in readme_snippets() if 'api_name="/generate"' in s)
    args = re.search(r'client\.predict\(\s*"[^"]*",\s*(\d+),\s*(\d+),\s*([\d.]+),\s*(\d+)', first)
    assert args, first
    assert (int(args[2]), float(args[3])) == (defaults.STEPS, defaults.GUIDANCE), first


def test_the_readme_python_snippets_run_against_the_app(url, tmp_path, monkeypatch):
    from gradio_client import Client
    snippets = readme_snippets()
    assert snippets and README_URL in snippets[0], "the first snippet must connect to the README's URL"
    write_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    calls: list[tuple[str, tuple, object]] = []
    predict = Client.predict

    def recorded(self, *args, api_name=None, **kw):
        out = predict(self, *args, api_name=api_name, **kw)
        calls.append((api_name, args, out))
        return out

    monkeypatch.setattr(Client, "predict", recorded)
    ns: dict = {"__name__": "readme"}
    for i, code in enumerate(snippets):
        exec(compile(code.replace(README_URL, repr(url)), f"README.md python block {i + 1}", "exec"), ns)

    names = [c[0] for c in calls]
    assert names == ["/generate", "/gif", "/temporal_attention", "/inpaint", "/cinemagraph", "/video_to_video",
                     "/compare"], names
    by_name = {c[0]: c for c in calls}
    _, args, out = by_name["/generate"]
    settings = out[3]
    assert (settings["steps"], settings["guidance"], settings["sampler"]) == \
        (defaults.STEPS, defaults.GUIDANCE, defaults.SAMPLER)
    assert args[2] == defaults.STEPS and args[3] == defaults.GUIDANCE
    assert ns["heat"]["type"] == "plotly"                                   # the temporal-attention matrix
    for edit in ("/inpaint", "/cinemagraph", "/video_to_video"):            # (source, upload, ..., seed, steps, ...)
        _, args, out = by_name[edit]
        steps_at = 4 if edit == "/video_to_video" else 5
        assert args[steps_at - 1] == 0 and args[steps_at] == defaults.STEPS, (edit, args)
        assert out[2]["mode"] == edit[1:] and "**Done**" in out[3], (edit, out[3])
    assert "gen" in ns and ns["gen"].video.ndim == 4                        # the library snippet ran too
