"""The Edit tab's API through gradio_client against the launched studio (tiny checkpoint): integration tier."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import launched_app
from PIL import Image

from stunet.video import write_video

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


@pytest.fixture(scope="module")
def client(tiny_checkpoint):
    from gradio_client import Client
    with launched_app(tiny_checkpoint) as (_, url):
        yield Client(url, verbose=False)


def _decode(path):
    import imageio.v3 as iio
    return np.asarray(iio.imread(path, index=None))


def test_inpaint_endpoint_with_an_uploaded_gif_and_mask_then_inspect(client, tmp_path):
    from gradio_client import handle_file
    v = np.zeros((8, 16, 16, 3), np.uint8)
    for i in range(8):
        v[i, 4:10, i:i + 6] = (230, 40, 40)
    gif = write_video(tmp_path / "in.gif", v, scale=2)
    m = np.zeros((64, 64), np.uint8)
    m[16:40, 8:48] = 255
    Image.fromarray(m).save(tmp_path / "mask.png")
    src, result, settings, status = client.predict(
        "upload", handle_file(str(gif)),
        {"background": None, "layers": [handle_file(str(tmp_path / "mask.png"))], "composite": None},
        "a red circle moving right",
        3, 2, 3.0, 8, api_name="/inpaint")
    src_v, res_v = _decode(src["video"] if isinstance(src, dict) else src), \
        _decode(result["video"] if isinstance(result, dict) else result)
    assert len(src_v) == len(res_v) == 8
    assert settings["mode"] == "inpaint" and settings["steps_run"] == 2 and "**Done**" in status
    # the Inspect endpoints read the session's last clip: now the edit's result
    img, plot, note = client.predict(1, api_name="/features")
    assert "step" in note.lower()


def test_video_to_video_endpoint_refuses_a_playlist_named_mp4(client, tmp_path):
    from gradio_client import handle_file
    bad = tmp_path / "clip.mp4"
    bad.write_text("#EXTM3U\n#EXTINF:1.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")
    with pytest.raises(Exception, match="not a GIF, MP4") as e:
        client.predict("upload", handle_file(str(bad)), "a blue circle", 0, 2, 3.0, 0.5, 8,
                       api_name="/video_to_video")
    assert "root:" not in str(e.value)
