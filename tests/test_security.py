"""Reliability and security of the studio: one section per property (numbered as in the safety checklist, shared/safety.md).

The app is launched once for this module on the tiny checkpoint, with two clips allowed to
sample at once (production samples one at a time: two makes the RNG-isolation test bite).
A copy of the checkpoint sits inside Gradio's upload folder, a place the file route would
otherwise serve, so only ``blocked_paths`` keeps it out.

    python -m pytest tests/test_security.py                  # the unit checks (default run)
    python -m pytest -m integration tests/test_security.py   # the checks against the launched app
    STUNET_FUZZ_EXAMPLES=2000 python -m pytest -m integration tests/test_security.py -k fuzz    # a longer fuzz
    python -m pytest -m slow tests/test_security.py          # 1000 fuzz examples
    (load, the 100-request plateau and the largest request's memory: tests/test_reliability_load.py)
"""
from __future__ import annotations

import contextlib
import html
import http.client
import io
import json
import logging
import os
import re
import resource
import shutil
import struct
import threading
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import launched_app, slow_model

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a red circle moving right"
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


# ============================================================================ helpers
def wait_until(cond, timeout: float, every: float = 0.02) -> bool:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return True
        time.sleep(every)
    return cond()


def png(w: int = 48, h: int = 40, seed: int = 0) -> bytes:
    from PIL import Image
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pixel_bomb(w: int = 20000, h: int = 20000) -> bytes:
    """A valid-looking PNG of a few hundred bytes whose header claims w x h RGB pixels."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + _chunk(b"IEND", b""))


BAD_UPLOADS = {   # name -> (bytes, what the message must say)
    "not-an-image.png": (b"GIF? no: just some text, or a shell script\n#!/bin/sh\n", "not an image file"),
    "truncated.png": (png()[:300], "damaged or truncated"),
    "pixel-bomb.png": (pixel_bomb(), "too many pixels"),
    "too-wide.png": (pixel_bomb(6000, 10), "6000x10 pixels"),
    "too-many-pixels.png": (pixel_bomb(4000, 4000), "4000x4000 pixels"),
    "postscript.eps": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n(x) print\n", "not an image file"),
    "empty.png": (b"", "empty"),
}


GENERATE_HEAD = (PROMPT, 0, 1, 3.0, 8, "dpm++", 1, 8)   # prompt, seed, steps, guidance, frames, sampler, stride, fps


def generate_data(*head, first_frame=None, model=None, style="None", style_strength=1.0, upscale=False) -> list:
    """Every input of /generate in order, as a raw call must send them (Gradio refuses a short list before the
    handler runs, which would make a test of the handler's own checks pass vacuously): ``head`` replaces the
    leading values of ``GENERATE_HEAD``; ``test_generate_data_is_every_input_of_the_endpoint`` keeps it whole."""
    return [*head, *GENERATE_HEAD[len(head):], first_frame, model, style, style_strength, upscale]


def raw_get(url: str, path: str, method: str = "GET") -> tuple[int, bytes]:
    """Send ``path`` byte for byte (no client-side normalisation of ``..`` or %-escapes)."""
    host, port = url.split("//")[1].strip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def raw_call(url: str, data: list | str, endpoint: str = "generate", timeout: float = 60) -> tuple[str, object]:
    """POST /gradio_api/call/<endpoint> and read its SSE answer: ("complete", outputs) or ("error", message)."""
    import httpx
    body = data if isinstance(data, str) else json.dumps({"data": data})
    r = httpx.post(f"{url}gradio_api/call/{endpoint}", content=body,
                   headers={"content-type": "application/json"}, timeout=timeout)
    if r.status_code != 200:
        return f"http {r.status_code}", r.text
    eid = r.json()["event_id"]
    text = httpx.get(f"{url}gradio_api/call/{endpoint}/{eid}", timeout=timeout).text
    event = payload = None
    for line in text.splitlines():
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            payload = json.loads(line.split(":", 1)[1])
    if event == "error":
        return "error", (payload or {}).get("error") if isinstance(payload, dict) else payload
    return event, payload


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())




def is_clear_message(msg) -> bool:
    return (isinstance(msg, str) and 0 < len(msg) <= 400 and "Traceback" not in msg
            and not re.search(r"(/tmp/|/work/|/root/|/home/|\.py\b|File \")", msg))


# ============================================================================ the app
@pytest.fixture(scope="module")
def app(tiny_checkpoint):
    """(demo, url, checkpoint dir inside the upload folder); generate concurrency 2."""
    from gradio.utils import get_upload_folder
    upload = Path(get_upload_folder())
    upload.mkdir(parents=True, exist_ok=True)
    ckpt = upload / f"stunet-security-ckpt-{uuid.uuid4().hex[:8]}"
    shutil.copytree(tiny_checkpoint, ckpt)
    try:
        with launched_app(ckpt, generate_concurrency=2) as (d, url):   # STUNET_MODEL: launch_options() blocks it
            yield d, url, ckpt
    finally:
        shutil.rmtree(ckpt, ignore_errors=True)


@pytest.fixture(scope="module")
def url(app):
    return app[1]


@pytest.fixture(scope="module")
def studio(app):
    return app[0].studio


def new_client(url):
    from gradio_client import Client
    return Client(url, verbose=False, download_files=False)


@pytest.fixture(scope="module")
def client(url):
    return new_client(url)


def video_of(result) -> np.ndarray:
    """Decode the MP4 of a /generate result (download_files=False: a FileData dict with a URL)."""
    import httpx
    import imageio.v3 as iio
    v = result[0]
    v = v.get("video", v) if isinstance(v, dict) else v
    data = httpx.get(v["url"], timeout=30).content
    return np.asarray(iio.imread(data, index=None, extension=".mp4"))


# ============================================================================ 1. reproducible
@pytest.mark.integration
def test_same_seed_same_clip_in_process_bit_for_bit_even_from_threads(studio, monkeypatch):
    """The uint8 clip itself (each with its own Inspector, as the handler runs it), sequential vs 8 threads
    sampling at once with mixed seeds. Video files are not written here (the API test below does)."""
    import demo.studio as S
    monkeypatch.setattr(S, "write_video", lambda path, *a, **k: path)
    seeds = [3, 1, 4, 1, 5, 9, 2, 6]

    def clip(seed):
        return list(studio.generate(PROMPT, seed, 3, 3.0, 8))[-1][-1].video

    sequential = {s: clip(s) for s in sorted(set(seeds))}
    with ThreadPoolExecutor(8) as ex:
        parallel = list(ex.map(clip, seeds))
    for s, v in zip(seeds, parallel):
        assert np.array_equal(v, sequential[s]), f"seed {s} differs when sampled alongside others"
    assert not np.array_equal(sequential[1], sequential[3])


@pytest.mark.integration
def test_eight_concurrent_api_calls_equal_their_sequential_twins(url, client):
    calls = [(PROMPT, 11, 2, 3.0, 8), ("a blue square spinning", 12, 2, 2.0, 8), (PROMPT, 11, 2, 3.0, 8),
             ("a green triangle bouncing", 13, 1, 3.0, 12), (PROMPT, 14, 2, 1.0, 8),
             ("a blue square spinning", 12, 2, 2.0, 8), (PROMPT, 14, 2, 1.0, 8), ("a green triangle bouncing", 13, 1, 3.0, 12)]
    twins = {}
    for args in dict.fromkeys(calls):
        twins[args] = video_of(client.predict(*args, api_name="/generate"))
    clients = [new_client(url) for _ in calls]
    with ThreadPoolExecutor(len(calls)) as ex:
        results = list(ex.map(lambda ca: ca[0].predict(*ca[1], api_name="/generate"), zip(clients, calls)))
    for args, res in zip(calls, results):
        assert res[3]["seed"] == args[1]
        assert np.array_equal(video_of(res), twins[args]), args


# ============================================================================ 2. bounded
LIMIT_CASES = [   # (the leading inputs, or the named ones that differ from generate_data's; what the message names)
    (("x " * 101, 0, 1, 3.0, 8), "at most 200 characters"),
    ((PROMPT, -1, 1, 3.0, 8), "Seed must be a whole number from 0 to 2147483647"),
    ((PROMPT, 2**31, 1, 3.0, 8), "Seed must be a whole number from 0 to 2147483647"),
    ((PROMPT, 10**400, 1, 3.0, 8), "Seed must be a whole number from 0 to 2147483647"),
    ((PROMPT, 0.5, 1, 3.0, 8), "Seed must be a whole number"),
    ((PROMPT, 0, 0, 3.0, 8), "Steps must be a whole number from 1 to 50"),
    ((PROMPT, 0, 51, 3.0, 8), "Steps must be a whole number from 1 to 50"),
    ((PROMPT, 0, 10**400, 3.0, 8), "Steps must be a whole number from 1 to 50"),
    ((PROMPT, 0, 1, 0.99, 8), "Guidance must be a number from 1 to 10"),
    ((PROMPT, 0, 1, 10.01, 8), "Guidance must be a number from 1 to 10"),
    ((PROMPT, 0, 1, 3.0, 0), "Frames must be a multiple of 2 from 2 to 32"),
    ((PROMPT, 0, 1, 3.0, 34), "Frames must be a multiple of 2 from 2 to 32"),
    ((PROMPT, 0, 1, 3.0, 7), "Frames must be a multiple of 2"),
    ((PROMPT, 0, 1, 3.0, 8, "euler", 1, 8), "Sampler must be one of: dpm++, ddim"),
    ((PROMPT, 0, 1, 3.0, 8, "dpm++", 3, 8), "Stride must be"),
    ((PROMPT, 0, 1, 3.0, 8, "dpm++", 1, 0), "Frame rate must be a whole number from 1 to 30"),
    ((PROMPT, 0, 1, 3.0, 8, "dpm++", 1, 31), "Frame rate must be a whole number from 1 to 30"),
    ({"style": "watercolour"}, "Style must be one of: None"),
    ({"style": 3}, "Style must be one of: None"),
    ({"style_strength": 1.5}, "Style strength must be a number from 0 to 1"),
    ({"style_strength": -0.1}, "Style strength must be a number from 0 to 1"),
    ({"style_strength": "x"}, "Style strength must be a number from 0 to 1"),
    ({"upscale": "yes"}, "Upscale must be true or false"),
    ({"upscale": 2}, "Upscale must be true or false"),
]


@pytest.mark.integration
def test_every_limit_is_checked_on_the_server_and_named(url, studio):
    """Raw API calls (no widget, no client-side check): each over-limit value gets a message naming the limit,
    before any model call."""
    for args, msg in LIMIT_CASES:
        data = generate_data(*args) if isinstance(args, tuple) else generate_data(**args)
        with slow_model(studio.pipe.model, 0) as calls:
            kind, err = raw_call(url, data)
        assert kind == "error" and msg in err, (args, kind, err)
        assert not calls, args                                          # refused before sampling
        assert is_clear_message(err)


@pytest.mark.integration
def test_widget_bounds_match_the_server_limits(app):
    from demo import limits as L
    d = app[0]
    comps = {c.elem_id: c for c in d.blocks.values() if getattr(c, "elem_id", None)}
    assert (comps["steps"].minimum, comps["steps"].maximum) == (L.MIN_STEPS, L.MAX_STEPS)
    assert (comps["guidance"].minimum, comps["guidance"].maximum) == (L.MIN_GUIDANCE, L.MAX_GUIDANCE)
    assert (comps["seed"].minimum, comps["seed"].maximum) == (L.MIN_SEED, L.MAX_SEED)
    assert (comps["fps"].minimum, comps["fps"].maximum) == (L.MIN_FPS, L.MAX_FPS)
    assert (comps["frames"].minimum, comps["frames"].maximum) == L.frames_range(2, 8)
    assert comps["prompt"].max_length == L.MAX_PROMPT_CHARS
    assert d.max_file_size == L.MAX_UPLOAD_BYTES
    assert d._queue.max_size == L.QUEUE_MAX_SIZE


@pytest.mark.integration
def test_generate_data_is_every_input_of_the_endpoint(app, url):
    """The raw calls above send every input: a list one short would be refused by Gradio itself and the
    tests of the handler's own checks would pass without reaching them."""
    d = app[0]
    fn = next(f for f in d.fns.values() if f.api_name == "generate")
    assert len(generate_data()) == len(fn.inputs)
    kind, out = raw_call(url, generate_data())
    assert kind == "complete", out


def test_error_text_is_escaped():
    from demo.errors import user_error
    from demo.studio import md_escape
    e = user_error("<img src=x onerror=alert(1)>")
    assert "<img" not in e.message and "&lt;img" in e.message
    assert md_escape("[x](javascript:alert(1)) <b>") == r"\[x\]\(javascript:alert\(1\)\) &lt;b&gt;"


# ============================================================================ 3. bad input
BAD_PROMPTS = {
    "": "empty", "   \t\n ": "empty", "x" * 201: "200 characters",
    "красный круг движется": "None of the prompt", "赤い円が右に動く": "None of the prompt",
    "a red circle\x00": "control or invisible", "a red\x1b[31m circle": "control or invisible",
    "a red\u202ecircle": "control or invisible", "a red\u200bcircle": "control or invisible",
    "<script>alert(1)</script>": "None of the prompt", "<img src=x onerror=alert(1)>": "None of the prompt",
    "😀" * 20: "None of the prompt", "a zebra dancing": "says what to draw",
}


@pytest.mark.integration
def test_bad_prompts_get_clear_escaped_errors_fast(client, studio):
    from gradio_client.exceptions import AppError
    for prompt, msg in BAD_PROMPTS.items():
        with slow_model(studio.pipe.model, 0) as calls, pytest.raises(AppError) as e:
            client.predict(prompt, 0, 1, 3.0, 8, api_name="/generate")
        assert not calls, prompt                                        # refused before any model call
        text = str(e.value)
        assert msg in text, (prompt, text)
        assert "<script" not in text and "<img" not in text and is_clear_message(text)
    for value in (None, 17, ["a", "red"], {"path": "x"}):
        with pytest.raises(AppError, match="The prompt must be text"):
            client.predict(value, 0, 1, 3.0, 8, api_name="/generate")


@pytest.mark.integration
def test_html_in_a_valid_prompt_is_escaped_in_the_status(client):
    res = client.predict("a red circle <img src=x onerror=alert(1)> [x](javascript:alert(1))", 0, 1, 3.0, 4,
                         api_name="/generate")
    status = res[5]
    assert "ignored unknown words" in status
    assert "<img" not in status and "](javascript" not in status


@pytest.mark.integration
def test_malformed_raw_calls_are_refused_without_internals(url, studio):
    def every_input(*head, **named) -> str:    # as JSON, with NaN / Infinity where Python floats have them
        return json.dumps({"data": generate_data(*head, **named)})
    for body in [every_input("a red circle", float("nan")), every_input("a red circle", 0, 1, float("inf")),
                 every_input("a red circle", 0, 1, 3.0).replace("3.0", "1e999"), every_input("a red \ud800 circle"),
                 every_input("a red circle", 0, 1, 3.0, 8, style_strength=float("nan")),
                 every_input("a red circle", {"a": [1, 2]}, [], "x", True, ["dpm++"], None, "8"),
                 '{"data": []}', '{"data": "x"}', 'not json', '{"data": ["' + "a" * 100_000 + '"]}']:
        with slow_model(studio.pipe.model, 0) as calls:
            kind, err = raw_call(url, body)
        assert kind != "complete", body[:80]
        assert not calls, body[:80]                                     # refused before any model call
        text = json.dumps(err)
        assert "Traceback" not in text and "/tmp/" not in text and "/work/" not in text and "site-packages" not in text


def _upload(url, name, data) -> dict:
    """Upload like a browser (multipart, one file) and return the FileData dict to send."""
    import httpx
    r = httpx.post(f"{url}gradio_api/upload", files=[("files", (name, data))], timeout=30)
    assert r.status_code == 200, (r.status_code, r.text)
    return {"path": r.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}


@pytest.mark.integration
def test_bad_uploads_get_clear_errors_fast_and_the_server_keeps_serving(client, studio, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    for name, (data, msg) in BAD_UPLOADS.items():
        p = tmp_path / name
        p.write_bytes(data)
        with slow_model(studio.pipe.model, 0) as calls, pytest.raises(AppError) as e:
            client.predict(PROMPT, 0, 1, 3.0, 8, "dpm++", 1, 8, handle_file(str(p)), api_name="/generate")
        assert not calls, name                                          # refused before any model call
        assert msg in str(e.value) and "first-frame image was refused" in str(e.value), (name, str(e.value))
        assert is_clear_message(str(e.value))
    good = tmp_path / "first.png"
    good.write_bytes(png(64, 48))
    res = client.predict(PROMPT, 0, 2, 3.0, 8, "dpm++", 1, 8, handle_file(str(good)), api_name="/generate")
    assert res[3]["first_frame"] == "uploaded image" and "from your first frame" in res[5]


@pytest.mark.integration
def test_first_frame_conditions_the_clip(studio, tmp_path, monkeypatch):
    """The upload really is the first frame (image-to-video), read at the model's size."""
    import demo.files as F
    monkeypatch.setattr(F, "upload_folder", lambda: tmp_path.resolve())
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :32] = 255
    from PIL import Image
    Image.fromarray(img).save(tmp_path / "half.png")
    rec = list(studio.generate(PROMPT, 0, 2, 3.0, 8, first_frame={"path": str(tmp_path / "half.png")}))[-1][-1]
    assert rec.first_frame.shape == (16, 16, 3) and rec.first_frame[:, :8].min() == 255
    plain = list(studio.generate(PROMPT, 0, 2, 3.0, 8))[-1][-1]
    assert not np.array_equal(rec.video, plain.video)


@pytest.mark.integration
def test_first_frame_must_be_an_upload_of_this_app(url, app):
    ckpt = app[2]
    secret = png(16, 16, seed=5)
    outside = Path("/tmp") / f"stunet-outside-{uuid.uuid4().hex[:6]}.png"
    outside.write_bytes(secret)
    try:
        for value in ({"path": str(outside)}, {"path": "/etc/passwd"}, {"path": str(ckpt / "model.safetensors")},
                      {"path": f"{ckpt}/../../../etc/passwd"}, {"path": "http://127.0.0.1:1/x.png"},
                      {"path": str(outside), "meta": {"_type": "gradio.FileData"}}, "/etc/passwd", 5, ["x"]):
            kind, err = raw_call(url, generate_data(first_frame=value))
            assert kind == "error", value
            assert err is None or is_clear_message(err), (value, err)
            assert "root:" not in json.dumps(err)
    finally:
        outside.unlink()


@pytest.mark.integration
def test_oversized_uploads_are_refused_at_the_door(url):
    import httpx
    from demo import limits as L
    big = b"\0" * (L.MAX_UPLOAD_BYTES + 1)
    r = httpx.post(f"{url}gradio_api/upload", files=[("files", ("big.png", big))], timeout=30)
    assert r.status_code == 413
    many = [("files", (f"{i}.png", b"\0" * (L.MAX_UPLOAD_BYTES // 2))) for i in range(4)]   # fine one by one
    assert httpx.post(f"{url}gradio_api/upload", files=many, timeout=30).status_code == 413

    def chunked():
        yield b"--x\r\n"
    r = httpx.post(f"{url}gradio_api/upload", content=chunked(),
                   headers={"content-type": "multipart/form-data; boundary=x"}, timeout=30)
    assert r.status_code == 411
    assert httpx.get(f"{url}gradio_api/info", timeout=10).status_code == 200      # still serving


@pytest.mark.integration
def test_every_file_input_is_one_we_test(app):
    """If a file input (video, audio, file...) is added, this fails until its bad-upload tests exist here."""
    import gradio as gr
    d = app[0]
    file_inputs = set()
    for fn in d.fns.values():
        for comp in fn.inputs:
            schema = json.dumps(comp.api_info()) if hasattr(comp, "api_info") else ""
            if isinstance(comp, (gr.File, gr.Image, gr.Video, gr.Audio, gr.UploadButton, gr.Gallery,
                                 gr.Model3D, gr.ImageEditor, gr.MultimodalTextbox)) or "FileData" in schema:
                file_inputs.add((type(comp).__name__, comp.elem_id))
    # first-frame: the bad-upload tests here; edit-upload and edit-mask (the Edit tab): tests/test_video_decode.py
    # (hostile GIF / MP4 / .npy files), tests/test_edit_tab.py and tests/test_app_edit.py (uploads through the API)
    assert file_inputs == {("Image", "first-frame"), ("File", "edit-upload"), ("ImageMask", "edit-mask")}, file_inputs
    image = next(c for c in d.blocks.values() if getattr(c, "elem_id", None) == "first-frame")
    assert image.type == "filepath"
    gen = next(f for f in d.fns.values() if f.api_name == "generate")
    assert gen.preprocess is False                 # so check_first_frame sees (and checks) the raw path


FUZZ_EXAMPLES = int(os.environ.get("STUNET_FUZZ_EXAMPLES", "120"))


def _strategies():
    from hypothesis import strategies as st
    words = st.lists(st.sampled_from(["a", "red", "blue", "circle", "square", "moving", "right", "zzz", "<b>",
                                      "spinning", "&amp;", "quickly", "[x](y)"]), min_size=1, max_size=8)
    valid = st.tuples(words.map(" ".join).filter(lambda p: any(w in p for w in ("red", "blue", "circle", "square"))),
                      st.integers(0, 2**31 - 1), st.sampled_from([1, 2]), st.sampled_from([1.0, 2.5, 3.0, 10.0]),
                      st.sampled_from([2, 4, 8, 12]), st.sampled_from(["dpm++", "ddim"]),
                      st.sampled_from([1, 2, 4, "2"]), st.integers(1, 30))
    anything = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                         st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                              max_size=2))
    junk = [
        st.one_of(st.text(max_size=260), st.sampled_from(list(BAD_PROMPTS)), anything),
        st.one_of(st.integers(-2**40, 2**40), st.sampled_from([2**31, -1, 1.5, "7", 1e300]), anything),
        st.one_of(st.integers(-10, 10**9), st.floats(-1e6, 1e6), anything),
        st.one_of(st.floats(-1e308, 1e308), st.integers(-100, 100), anything),
        st.one_of(st.integers(-100, 10**6), st.floats(-1e3, 1e3), anything),
        st.one_of(st.sampled_from(["", "euler", "DPM++", "dpm++ ", "<b>ddim</b>"]), anything),
        st.one_of(st.sampled_from([0, 3, 8, -1, "1 ", "x", 1.5, 2.0]), anything),
        st.one_of(st.integers(-100, 1000), anything),
    ]
    # about one example in ten is valid (and cheap: 1-2 steps); the others change one to three arguments
    mutate = st.sampled_from([1, 2, 1, 3, 1, 2, 0, 1, 2, 1]).flatmap(
        lambda n: st.lists(st.integers(0, 7), min_size=n, max_size=n, unique=True))
    return valid, junk, mutate


@pytest.mark.integration
def test_fuzz_generate_api(url, client, studio):
    """Hypothesis over /generate: every call either succeeds with exactly the asked settings, or fails with the
    message the server-side check gives (escaped), quickly; never an internal error; the server keeps serving."""
    _fuzz(client, studio, FUZZ_EXAMPLES)


@pytest.mark.slow
@pytest.mark.integration
def test_fuzz_generate_api_long(client, studio):
    _fuzz(client, studio, max(FUZZ_EXAMPLES, 1000))


def _fuzz(client, studio, examples: int):
    from gradio_client.exceptions import AppError
    from hypothesis import HealthCheck, given, settings, strategies as st
    from demo.limits import LimitError
    valid, junk, mutate = _strategies()
    stats = {"ok": 0, "refused": 0}

    @settings(max_examples=examples, deadline=None, database=None, derandomize="CI" in os.environ,
              suppress_health_check=list(HealthCheck))
    @given(base=valid, which=mutate, data=st.data())
    def run(base, which, data):
        args = list(base)
        for i in which:
            args[i] = data.draw(junk[i], label=f"arg{i}")
        try:
            s, fps = studio.check_generate(*args)
            expected = None
        except LimitError as e:
            expected = html.escape(str(e))
        n0 = len(calls)
        try:
            res = client.predict(*args, api_name="/generate")
        except AppError as e:
            assert expected is not None, f"refused a valid request: {str(e)}"
            assert str(e) == expected or expected in str(e), (str(e), expected)
            assert len(calls) == n0, f"an invalid request ran {len(calls) - n0} model calls before its refusal"
            assert "Something went wrong" not in str(e)
            stats["refused"] += 1
            return
        assert expected is None, f"accepted an invalid request (the check says {expected!r})"
        settings_ = res[3]
        assert (settings_["prompt"], settings_["seed"], settings_["steps"], settings_["frames"], settings_["fps"]) \
            == (s.prompt, s.seed, s.steps, s.frames, fps)
        stats["ok"] += 1

    t0 = time.monotonic()
    with slow_model(studio.pipe.model, 0) as calls:
        run()
    print(f"fuzz: {stats['ok']} accepted, {stats['refused']} refused in {time.monotonic() - t0:.1f} s")
    assert stats["ok"] > 0 and stats["refused"] > 0
    assert client.predict(PROMPT, 0, 1, 3.0, 8, api_name="/generate")[3]["seed"] == 0


# ============================================================================ 5. cancellation and deadlines
@pytest.mark.integration
def test_cancel_stops_within_one_step_and_releases_everything(url, studio):
    model = studio.pipe.model
    hooks_before = hook_count(model)
    c = new_client(url)
    with slow_model(model, 0.25) as calls:
        job = c.submit(PROMPT, 0, 40, 3.0, 8, api_name="/generate")
        assert wait_until(lambda: len(calls) >= 2, 30)
        at_cancel = len(calls)
        job.cancel()
        # the run has ended when its Inspector is closed (its hooks leave the model): count the calls since
        assert wait_until(lambda: hook_count(model) == hooks_before + 1, 30), \
            "the Inspector's hooks were left on the model"
        late = len(calls) - at_cancel
        assert late <= 1, f"{late} model calls started after the cancel"
    assert hook_count(model) == hooks_before
    with slow_model(model, 0) as after:
        assert c.predict(PROMPT, 1, 1, 3.0, 8, api_name="/generate")[3]["seed"] == 1
    assert len(after) == 1                      # served at once: one step, one model call


@pytest.mark.integration
def test_every_job_has_a_deadline(client, studio, monkeypatch):
    from gradio_client.exceptions import AppError
    from demo import limits as L
    monkeypatch.setattr(L, "JOB_DEADLINE_FLOOR_S", 0)
    monkeypatch.setattr(L, "JOB_DEADLINE_MARGIN", 0.5)
    hooks_before = hook_count(studio.pipe.model)
    with slow_model(studio.pipe.model, 0.2) as calls:
        with pytest.raises(AppError, match="limit per clip"):
            client.predict(PROMPT, 0, 40, 3.0, 8, api_name="/generate")
        assert 1 <= len(calls) <= 4             # stopped on the projection after its first steps, not at 40
    assert hook_count(studio.pipe.model) == hooks_before


# ============================================================================ 6. no growth
def _new_files(since: float) -> int:
    """Files in Gradio's upload/cache folder (where every output and upload lives) written since ``since``."""
    from gradio.utils import get_upload_folder
    n = 0
    for p in Path(get_upload_folder()).rglob("*"):
        with contextlib.suppress(OSError):
            n += p.is_file() and p.stat().st_mtime >= since
    return n


def _out_dirs(studio) -> int:
    return sum(1 for p in studio.out_dir.iterdir() if p.is_dir())


@pytest.mark.integration
def test_outputs_and_cached_files_stay_bounded(app, client, monkeypatch):
    from demo import limits as L
    d = app[0]
    monkeypatch.setattr(L, "MAX_OUTPUT_DIRS", 2)
    monkeypatch.setattr(L, "CACHE_MAX_FILES", 8)
    d.studio.prune_cache()
    since = time.time() - 0.01
    counts = []
    for i in range(16):
        client.predict(PROMPT, 100 + i, 1, 3.0, 4, api_name="/generate")
        counts.append((_out_dirs(d.studio), _new_files(since)))
    dirs, files = zip(*counts)
    assert max(dirs) <= 2 + 1 + 1, dirs          # the cap, the examples folder, the request being written
    # each request writes an MP4, a GIF and one or two previews: 16 requests would leave about 60 files
    assert max(files) <= 2 * 3 + 8 + 4, files     # 3 request folders of 2, the cache cap, the last previews
    assert files[-1] - files[7] <= 4, files


@pytest.mark.integration
def test_upload_floods_are_pruned(app, url, monkeypatch):
    """Uploads nobody uses still land on disk: the janitor's prune keeps the app's files under the caps."""
    import httpx
    from demo import limits as L
    d = app[0]
    paths = [httpx.post(f"{url}gradio_api/upload", files=[("files", (f"{i}.png", png(8, 8, seed=i)))],
                        timeout=10).json()[0] for i in range(25)]
    assert all(Path(p).exists() for p in paths)
    # the cap drops only now: lowered before the uploads, the app's own janitor (on its schedule) could prune
    # some of them mid-loop on a slow machine
    monkeypatch.setattr(L, "CACHE_MAX_FILES", 10)
    d.studio.prune_cache()
    left = [p for p in paths if Path(p).exists()]
    assert len(left) <= 8 and set(left) == set(paths[len(paths) - len(left):])       # the newest are kept


def test_the_janitor_prunes_on_a_schedule(monkeypatch):
    import weakref
    from demo import limits as L
    from demo.files import _janitor
    monkeypatch.setattr(L, "CACHE_PRUNE_EVERY_S", 0.01)

    class Fake:
        n = 0

        def prune_cache(self):
            self.n += 1

    fake, stop = Fake(), threading.Event()
    t = threading.Thread(target=_janitor, args=(weakref.ref(fake), stop), daemon=True)
    t.start()
    assert wait_until(lambda: fake.n >= 3, 5)
    stop.set()
    t.join(2)
    assert not t.is_alive()


# ============================================================================ 7. files
SECRET = "STUNET_TEST_SECRET=do-not-serve-" + uuid.uuid4().hex


@pytest.mark.integration
def test_file_route_serves_own_outputs_and_refuses_everything_else(app, monkeypatch, tmp_path):
    d, url, ckpt = app
    kind, out = raw_call(url, generate_data(PROMPT, 3))
    assert kind == "complete"
    video_url = out[0]["video"]["url"] if "video" in out[0] else out[0]["url"]
    path = video_url.split("/gradio_api/file=", 1)[1]
    status, body = raw_get(url, "/gradio_api/file=" + path)
    assert status == 200 and body[4:8] == b"ftyp"                 # the app's own MP4 is served

    (tmp_path / ".env").write_text(SECRET)
    monkeypatch.chdir(tmp_path)                                   # a .env in the server's working directory
    from gradio.utils import get_upload_folder
    up = get_upload_folder()                                      # Gradio's upload/cache folder
    refused = [
        "/etc/passwd", "../../../../../../etc/passwd", "..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "%252e%252e%252f%252e%252e%252fetc%252fpasswd",
        "%2Fetc%2Fpasswd", "%252Fetc%252Fpasswd", "/proc/self/environ", "//etc/passwd",
        f"{up}/../../../etc/passwd", f"{up}/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"{ckpt}/model.safetensors", f"{ckpt}/config.json", f"{ckpt}/vocab.json", f"{ckpt}/./model.safetensors",
        f"{ckpt}//model.safetensors", str(ckpt).replace("/", "%2F") + "%2Fmodel.safetensors",
        f"{up}/x/../{ckpt.name}/model.safetensors", f"{ckpt}/MODEL.SAFETENSORS",
        str(ROOT / "assets" / "stunet-shapes" / "model.safetensors"), str(ROOT / "pyproject.toml"),
        str(ROOT / "demo" / "app.py"), ".env", "./.env", "%2e%65nv", str(tmp_path / ".env"),
        f"http://127.0.0.1:{url.rsplit(':', 1)[1].strip('/')}/gradio_api/info", "https://example.com/",
        "HTTP://169.254.169.254/latest/meta-data/", "http%3A%2F%2F127.0.0.1%2F", "file:///etc/passwd",
        f"{d.studio.out_dir}/../{ckpt.name}/model.safetensors", f"{d.studio.out_dir}/../../../etc/passwd",
    ]
    for target in refused:
        for method in ("GET", "HEAD"):
            status, body = raw_get(url, "/gradio_api/file=" + target, method)
            assert status in (400, 403, 404), (target, status)
            assert b"root:" not in body and b"STUNET_TEST_SECRET" not in body and not body.startswith(b"{\"frames\"")
    for prefix in ("/file=", "/gradio_api/file/", "/gradio_api/proxy="):
        status, body = raw_get(url, prefix + "/etc/passwd")
        assert status != 200 and b"root:" not in body, prefix


def test_the_guard_keeps_url_fetches_and_big_uploads_away_from_gradio():
    """Unit test of demo.guard.RequestGuard: these requests never reach the app behind it."""
    import asyncio
    from demo.guard import RequestGuard

    reached = []

    async def inner(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def status(path, method="GET", headers=()):
        sent = []

        async def send(msg):
            sent.append(msg)

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {"type": "http", "path": path, "method": method, "headers": list(headers)}
        asyncio.run(RequestGuard(inner, max_upload_bytes=1000)(scope, receive, send))
        return sent[0]["status"]

    for target in ("https://example.com/x.png", "http://169.254.169.254/", "HTTP://a/b", "http%3A%2F%2Fa%2Fb",
                   "http%253A%252F%252Fa", "//example.com/x", "file:///etc/passwd"):
        assert status("/gradio_api/file=" + target) == 403, target
    assert status("/gradio_api/upload", "POST", [(b"content-length", b"1001")]) == 413
    assert status("/gradio_api/upload", "POST", [(b"content-length", b"x")]) == 413
    assert status("/gradio_api/upload", "POST") == 411
    assert not reached
    assert status("/gradio_api/upload", "POST", [(b"content-length", b"1000")]) == 200
    assert status("/gradio_api/file=/tmp/gradio/abc/clip.mp4") == 200
    assert status("/gradio_api/info") == 200


@pytest.mark.integration
def test_blocked_paths_cover_the_checkpoint(app):
    d, _, ckpt = app
    from gradio.utils import is_in_or_equal
    assert any(is_in_or_equal(ckpt / "model.safetensors", b) for b in d.blocked_paths)
    assert not d.allowed_paths


# ============================================================================ 8. checkpoints (beyond test_checkpoint.py)
def test_a_pickle_named_model_safetensors_is_never_unpickled(tiny_checkpoint, tmp_path):
    import pickle
    from stunet.checkpoint import CheckpointError, load_pretrained
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    d = tmp_path / "c"
    shutil.copytree(tiny_checkpoint, d)
    (d / "model.safetensors").write_bytes(pickle.dumps({"conv_in.weight": Evil()}))
    with pytest.raises(CheckpointError, match="cannot read"):
        load_pretrained(d)
    assert not marker.exists()
    # a pytorch_model.bin next to the safetensors is ignored
    shutil.copy(tiny_checkpoint / "model.safetensors", d / "model.safetensors")
    (d / "pytorch_model.bin").write_bytes(pickle.dumps(Evil()))
    load_pretrained(d)
    assert not marker.exists()


def test_a_safetensors_header_claiming_huge_sizes_fails_fast(tiny_checkpoint, tmp_path):
    from stunet.checkpoint import CheckpointError, load_pretrained
    d = tmp_path / "c"
    shutil.copytree(tiny_checkpoint, d)
    (d / "model.safetensors").write_bytes(struct.pack("<Q", 2**62) + b"{}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss          # KiB
    with pytest.raises(CheckpointError, match="cannot read"):
        load_pretrained(d)
    header = json.dumps({"conv_in.weight": {"dtype": "F32", "shape": [2**20, 2**20], "data_offsets": [0, 2**42]}})
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0" * 64)
    with pytest.raises(CheckpointError):
        load_pretrained(d)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown < 256 * 1024, f"peak memory grew by {grown / 1024:.0f} MB"   # nothing near the claimed sizes


def test_no_code_path_unpickles():
    pattern = re.compile(r"torch\.load\(|pickle\.loads?\(|allow_pickle=True|weights_only=False|joblib\.load")
    for p in list((ROOT / "stunet").rglob("*.py")) + list((ROOT / "demo").rglob("*.py")) + [ROOT / "app.py"]:
        for i, line in enumerate(p.read_text().splitlines(), 1):
            assert not pattern.search(line.split("#")[0]), f"{p.name}:{i}: {line.strip()}"


# ============================================================================ 9. errors
@pytest.mark.integration
def test_internal_errors_are_short_for_the_user_and_full_in_the_log(app, client, monkeypatch, caplog):
    from gradio_client.exceptions import AppError
    from demo import figures as views
    d = app[0]
    real = d.studio.pipe

    class Broken:
        def __getattr__(self, name):
            return getattr(real, name)

        def iter(self, *a, **k):
            raise RuntimeError("boom in /srv/secret/model.safetensors, token=hf_abc123")

    monkeypatch.setattr(d.studio, "pipe", Broken())
    with caplog.at_level(logging.ERROR, logger="stunet.studio"):
        with pytest.raises(AppError) as e:
            client.predict(PROMPT, 0, 1, 3.0, 8, api_name="/generate")
    msg = str(e.value)
    assert "Something went wrong on the server (ref " in msg
    assert "secret" not in msg and "hf_abc123" not in msg and "Traceback" not in msg and is_clear_message(msg)
    ref = re.search(r"ref ([0-9a-f]{8})", msg).group(1)
    logged = [r for r in caplog.records if ref in r.getMessage()]
    assert logged and "boom in /srv/secret" in caplog.text and "Traceback" in caplog.text
    monkeypatch.setattr(d.studio, "pipe", real)

    # an inspect endpoint that fails the same way
    client.predict(PROMPT, 0, 2, 3.0, 8, api_name="/generate")
    monkeypatch.setattr(views, "features_image", lambda *a, **k: open("/nonexistent/secret/features.png"))
    d.studio._features_cache.clear()
    with pytest.raises(AppError) as e:
        client.predict(1, api_name="/features")
    assert "Something went wrong" in str(e.value) and "/nonexistent" not in str(e.value)
