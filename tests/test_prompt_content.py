"""A prompt whose only known words are stopwords ("a zebra dancing": only "a" is known) is refused like one
with no known word, by one rule (``stunet.text.Tokenizer.check``): the library, the command line, and the
studio's Generate, Edit and Compare handlers (the API: ``tests/test_security.py``, BAD_PROMPTS)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import slow_model

from demo.limits import LimitError
from stunet.shapes import world
from stunet.text import STOPWORDS, PromptError, Tokenizer

ZEBRA = "a zebra dancing"


def _names_unknown_and_vocabulary(msg: str, tok) -> None:
    assert "Unknown: zebra, dancing." in msg, msg
    assert "It knows: " + ", ".join(tok.words) in msg, msg


@pytest.fixture(scope="module")
def pipe(tiny_model, tiny_tokenizer):
    from stunet.pipeline import Pipeline
    return Pipeline(tiny_model, tiny_tokenizer, "fp32")


@pytest.fixture(scope="module")
def studio(pipe):
    from demo.studio import Studio
    return Studio(pipe)


def test_check_refuses_stopwords_only_and_all_unknown():
    tok = Tokenizer(world.VOCABULARY)
    assert set(world.FILLER) <= STOPWORDS                      # the world's filler words carry no content
    with pytest.raises(PromptError) as e:
        tok.check(ZEBRA)
    assert "the only known ones (a) carry no content" in str(e.value)
    _names_unknown_and_vocabulary(str(e.value), tok)
    with pytest.raises(PromptError) as e:
        tok.check("the zebra is dancing")
    assert "(the, is)" in str(e.value) and "Unknown: zebra, dancing." in str(e.value)
    with pytest.raises(PromptError, match="None of the prompt's words are known to the model") as e:
        tok.check("zebra dancing")
    _names_unknown_and_vocabulary(str(e.value), tok)
    with pytest.raises(PromptError, match="no words"):
        tok.check("  ,. ")
    assert isinstance(PromptError("x"), ValueError)            # callers that catch ValueError still do
    enc = tok.check("a red zebra")                             # one word of content is enough
    assert enc.content == ["red"] and enc.unknown == ["zebra"]


def test_the_library_refuses_before_sampling(pipe):
    from stunet import editing
    from stunet.pipeline import Settings
    video = np.zeros((8, 16, 16, 3), np.uint8)
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    with slow_model(pipe.model, 0) as calls:
        with pytest.raises(PromptError, match="zebra"):
            pipe(Settings(ZEBRA, steps=1, frames=8))
        with pytest.raises(PromptError, match="zebra"):
            editing.inpaint(pipe, video, mask, ZEBRA, steps=1)
        with pytest.raises(PromptError, match="zebra"):
            editing.video_to_video(pipe, video, ZEBRA, 0.5, steps=1)
        with pytest.raises(PromptError, match="zebra"):
            editing.cinemagraph(pipe, video[0], mask, ZEBRA, frames=8, steps=1)
    assert calls == []


def test_the_cascade_refuses_before_sampling(tmp_path):
    from stunet.cascade import load_pipeline
    from stunet.cascade.testing import save_tiny_cascade
    from stunet.pipeline import Settings
    c = load_pipeline(save_tiny_cascade(tmp_path / "cascade", steps=1), precision="fp32")
    with pytest.raises(PromptError, match="zebra"):
        c(Settings(ZEBRA))


def test_the_command_line_exits_non_zero(tmp_path, capsys, tiny_checkpoint, tiny_tokenizer):
    from stunet.cli import main
    out = tmp_path / "z.npy"
    code = main(["generate", ZEBRA, "--model", str(tiny_checkpoint), "--steps", "1", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and not out.exists()
    _names_unknown_and_vocabulary(err, tiny_tokenizer)
    video = tmp_path / "in.npy"
    np.save(video, np.zeros((8, 16, 16, 3), np.uint8))
    code = main(["generate", ZEBRA, "--video", str(video), "--strength", "0.5", "--model", str(tiny_checkpoint),
                 "--steps", "1", "--out", str(out)])
    assert code == 1 and "zebra" in capsys.readouterr().err and not out.exists()


def test_the_studio_handlers_refuse(studio, pipe):
    from demo.compare import CompareTab
    from demo.editing import EditTab
    with slow_model(pipe.model, 0) as calls:
        with pytest.raises(LimitError) as e:
            list(studio.generate(ZEBRA, 0, 1, 3.0, 8))
        _names_unknown_and_vocabulary(str(e.value), pipe.tokenizer)
        with pytest.raises(LimitError, match="zebra"):
            list(EditTab(studio).video_to_video(None, "last", None, ZEBRA, 0, 1, 3.0, 0.5, 8))
        with pytest.raises(LimitError, match="zebra"):
            CompareTab(studio, lambda: None).check(ZEBRA, 0)
    assert calls == []
    html = studio.prompt_html(ZEBRA)                           # the words under the prompt say so as you type
    assert "nothing to generate from" in html and "nothing to generate from" not in studio.prompt_html("a red zebra")
