"""Intervene, Follow a point and Attention summaries through gradio_client (tiny checkpoint): integration tier."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import launched_app

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


@pytest.fixture(scope="module")
def client(tiny_checkpoint):
    from gradio_client import Client
    with launched_app(tiny_checkpoint) as (_, url):
        c = Client(url, verbose=False)
        c.predict("a red square quickly spinning", 2, 2, 3.0, 8, api_name="/generate")
        yield c


def _decode(v):
    import imageio.v3 as iio
    return np.asarray(iio.imread(v["video"] if isinstance(v, dict) else v, index=None))


def test_intervene(client):
    a, b, readings, xt, record, status = client.predict("tconv:all", "identity", "", api_name="/intervene")
    assert _decode(a).shape == _decode(b).shape and not np.array_equal(_decode(a), _decode(b))
    assert record["part"] == "tconv:all" and "| colour |" in readings
    record = client.predict("none", "identity", "", api_name="/intervene")[4]
    assert record["identical"]


def test_bad_part_named(client):
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match="tattn:mid.5.5"):
        client.predict("tattn:mid.5.5", "identity", "", api_name="/intervene")


def test_track_and_summary(client):
    image, plot, table, scores = client.predict(0, 4, 9, -1, api_name="/track")
    assert scores["x"] == 4 and scores["y"] == 9 and set(scores["tracks"]) == {"enc0", "mid", "dec0"}
    from gradio_client.exceptions import AppError
    with pytest.raises(AppError, match="outside the clip"):
        client.predict(0, 40, 9, -1, api_name="/track")
    plot, note, values = client.predict(False, api_name="/attention_summary")
    assert list(values) == ["full"] and values["full"][0]["layer"] == "mid.0.0"
