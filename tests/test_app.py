"""The studio through gradio_client against the launched app (tiny checkpoint via STUNET_MODEL): integration tier."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import free_port, model_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]
PROMPT = "a red circle moving right"


@pytest.fixture(scope="module")
def app(tiny_checkpoint):
    """The module-level ``demo`` (built lazily on the shared pipeline), launched on a free port."""
    with model_env(tiny_checkpoint):
        import demo.app as m
        m.__dict__.pop("demo", None)
        d = m.demo
        _, url, _ = d.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True,
                             **m.launch_options())
        yield d, url
        d.close()
        m.__dict__.pop("demo", None)


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client
    return Client(app[1], verbose=False)


def ffmpeg_info(path: str) -> str:
    import imageio_ffmpeg
    r = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", path], capture_output=True, text=True)
    return r.stderr


def decode(path: str) -> np.ndarray:
    import imageio.v3 as iio
    return np.asarray(iio.imread(path, index=None))


@pytest.fixture(scope="module")
def generated(client):
    return client.predict(PROMPT, 7, 3, 3.0, 12, api_name="/generate")


def test_generate_returns_playable_h264_with_asked_frames(client, generated):
    import imageio_ffmpeg
    video, mp4, gif, settings, preview, status = generated
    assert video.endswith(".mp4") and mp4.endswith(".mp4") and gif is None      # the GIF is made on request
    info = ffmpeg_info(video)
    assert re.search(r"Video: h264", info), info
    assert "yuv420p" in info
    n, _ = imageio_ffmpeg.count_frames_and_secs(video)
    assert n == 12
    frames = decode(video)
    assert frames.shape[0] == 12 and frames.shape[1] == frames.shape[2] >= 128      # upscaled; the page scales it
    client.predict(PROMPT, 7, 3, 3.0, 12, api_name="/generate")     # this session's last clip again
    gif = client.predict(api_name="/gif")
    assert gif.endswith(".gif") and decode(gif).shape[0] == 12
    precision = {k: settings.pop(k) for k in ("precision", "precision_reason")}       # what it computed in, and why
    assert settings == {"prompt": PROMPT, "seed": 7, "steps": 3, "guidance": 3.0, "frames": 12,
                        "sampler": "dpm++", "stride": 1, "fps": 8, "model": "full"}
    assert precision["precision"] in ("fp32", "bf16") and precision["precision_reason"]
    assert "seed 7" in status and Path(preview).is_file()


def test_same_seed_same_clip(client, generated):
    again = client.predict(PROMPT, 7, 3, 3.0, 12, api_name="/generate")
    np.testing.assert_array_equal(decode(generated[0]), decode(again[0]))
    other = client.predict(PROMPT, 8, 3, 3.0, 12, api_name="/generate")
    assert not np.array_equal(decode(generated[0]), decode(other[0]))


def test_optional_arguments(client):
    video, _, _, settings, _, _ = client.predict(PROMPT, 1, 2, 1.0, 4, "ddim", 2, 12, api_name="/generate")
    assert settings["sampler"] == "ddim" and settings["stride"] == 2 and settings["fps"] == 12
    assert decode(video).shape[0] == 4
    _, _, _, settings, _, _ = client.predict(PROMPT, 1, 2, 1.0, 4, sampler="ddim", fps=5, api_name="/generate")
    assert (settings["sampler"], settings["stride"], settings["fps"]) == ("ddim", 1, 5)


def test_inspect_endpoints_return_figures_for_the_last_clip(client, generated):
    client.predict(PROMPT, 7, 3, 3.0, 12, api_name="/generate")     # this session's last clip: 3 steps, 12 frames

    def plot(p):
        assert p["type"] == "plotly"
        fig = json.loads(p["plot"])
        assert fig["data"]
        return fig

    img, fig, note = client.predict(2, api_name="/features")
    assert Path(img).is_file() and "step **2**" in note
    plot(fig)
    picker, matrix, offsets, distance = client.predict(2, "mid.0.0", "mean", "average over all positions", 0, 0,
                                                       False, api_name="/temporal_attention")
    m = plot(matrix)
    assert "step 2" in m["layout"]["title"]["text"]
    plot(offsets), plot(distance)
    _, m1, _, _ = client.predict(1, "mid.0.0", "1", "at the picked position", 1, 2, True,
                                 api_name="/temporal_attention")
    assert "step 1" in plot(m1)["layout"]["title"]["text"] and "row 1, col 2" in plot(m1)["layout"]["title"]["text"]
    words, share = client.predict(0, "all", True, api_name="/word_attention")
    assert Path(words).is_file() and len(plot(share)["data"]) == 5          # a red circle moving right
    xt, film = client.predict(3, 2, api_name="/xt_slice")
    assert Path(xt).is_file() and Path(film).is_file()
    pyr = plot(client.predict(24, api_name="/pyramid"))
    assert "MultiDiffusion" in pyr["layout"]["title"]["text"]
    npz = client.predict(api_name="/export_npz")
    with np.load(npz) as z:
        assert z["video"].shape[0] == 12 and any(k.startswith("temporal_attention/002/") for k in z.files)


def test_inputs_are_validated_on_the_server(client):
    from gradio_client.exceptions import AppError
    cases = [
        ((PROMPT, 0, 3, 3.0, 7), "Frames must be a multiple of 2"),
        ((PROMPT, 0, 3, 3.0, 66), "Frames must be a multiple of 2"),
        ((PROMPT, 0, 0, 3.0, 8), "Steps must be a whole number from 1 to 50"),
        ((PROMPT, 0, 51, 3.0, 8), "Steps must be a whole number from 1 to 50"),
        ((PROMPT, 0, 3, 10.5, 8), "Guidance must be a number from 1 to 10"),
        ((PROMPT, 2**31, 3, 3.0, 8), "Seed must be a whole number from 0 to 2147483647"),
        ((PROMPT, "abc", 3, 3.0, 8), "Seed must be a whole number"),
        ((PROMPT, 0, "many", 3.0, 8), "Steps must be a whole number"),
        (("x" * 201, 0, 3, 3.0, 8), "200 characters"),
        (("", 0, 3, 3.0, 8), "empty"),
        (("<img src=x onerror=alert(1)>", 0, 3, 3.0, 8), "None of the prompt"),
    ]
    for args, msg in cases:
        with pytest.raises(AppError) as e:
            client.predict(*args, api_name="/generate")
        assert msg in str(e.value), (args, str(e.value))
        assert "<img" not in str(e.value)


def test_inspect_without_a_clip_is_a_clear_error(app):
    from gradio_client import Client
    from gradio_client.exceptions import AppError
    fresh = Client(app[1], verbose=False)
    with pytest.raises(AppError, match="generate one first"):
        fresh.predict(0, api_name="/features")


def test_internal_errors_are_short_and_logged(app, client, monkeypatch, caplog):
    from gradio_client.exceptions import AppError
    d, _ = app

    class Broken:
        def __getattr__(self, name):
            return getattr(d.studio.__dict__["_real_pipe"], name)

        def iter(self, *a, **k):
            raise RuntimeError("boom in /secret/path/model.safetensors")

    d.studio.__dict__["_real_pipe"] = d.studio.pipe
    monkeypatch.setattr(d.studio, "pipe", Broken())
    with caplog.at_level("ERROR", logger="stunet.studio"):
        with pytest.raises(AppError) as e:
            client.predict(PROMPT, 0, 2, 3.0, 8, api_name="/generate")
    msg = str(e.value)
    assert "Something went wrong" in msg and "secret" not in msg and "Traceback" not in msg
    assert any("boom" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_serving_limits(app):
    from demo import limits as L
    d, _ = app
    assert d._queue.max_size == L.QUEUE_MAX_SIZE
    gen = next(f for f in d.fns.values() if f.api_name == "generate")
    assert gen.concurrency_limit == L.GENERATE_CONCURRENCY
    assert d.studio.out_dir.is_dir()


def test_app_py_starts_without_sampling(tiny_checkpoint, tmp_path):
    """``python app.py`` honours GRADIO_SERVER_PORT and STUNET_MODEL and serves the page."""
    port = free_port()
    env = dict(os.environ, STUNET_MODEL=str(tiny_checkpoint), GRADIO_SERVER_PORT=str(port),
               GRADIO_SERVER_NAME="127.0.0.1", GRADIO_ANALYTICS_ENABLED="False")
    log = open(tmp_path / "server.log", "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        page = None
        while time.perf_counter() - t0 < 90 and proc.poll() is None:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
                break
            except OSError:
                time.sleep(0.25)
        elapsed = time.perf_counter() - t0
        assert page is not None, (tmp_path / "server.log").read_text()
        assert "STUNet studio" in page
        print(f"app.py served its page after {elapsed:.1f} s")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
    assert "Denoising" not in (tmp_path / "server.log").read_text()


def test_building_the_page_imports_no_plotting_or_diffusers(tiny_checkpoint):
    """The page is built (``demo.app.demo``) before diffusers, plotly or matplotlib is imported, and the
    model loads in the background: none of them is on the start-up path."""
    code = ("import sys, demo.app as m\n"
            "m.SERVER_WAIT_S = 3600\n"                       # keep the background load waiting for a server
            "d = m.demo\n"
            "heavy = sorted(k for k in ('diffusers', 'plotly', 'matplotlib') if k in sys.modules)\n"
            "print('HEAVY', heavy, 'LOADED', bool(m.models._PIPELINES), 'STUDIO', type(d.studio).__name__)\n")
    env = dict(os.environ, STUNET_MODEL=str(tiny_checkpoint), GRADIO_ANALYTICS_ENABLED="False")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "HEAVY [] LOADED False STUDIO Studio" in r.stdout, r.stdout + r.stderr
