"""The Compare tab's ``/compare`` endpoint through gradio_client against the launched studio (tiny STUNet via
STUNET_MODEL, a random tiny cascade via STUNET_CASCADE_MODEL): integration tier."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import launched_app

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]
PROMPT = "a blue square quickly spinning"


@pytest.fixture(scope="module")
def quick_checkpoint(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint with 2-step defaults (its sampling.json), so each comparison is quick."""
    d = tmp_path_factory.mktemp("tiny-2-steps")
    shutil.copytree(tiny_checkpoint, d, dirs_exist_ok=True)
    (d / "sampling.json").write_text(json.dumps({"steps": 2, "guidance": 3.0, "sampler": "ddim"}))
    return d


@pytest.fixture(scope="module")
def cascade_env(tmp_path_factory):
    """STUNET_CASCADE_MODEL names a random tiny cascade checkpoint (2 DDIM steps) inside the block."""
    from stunet.cascade.testing import save_tiny_cascade
    d = tmp_path_factory.mktemp("tiny-cascade")
    save_tiny_cascade(d, seed=0)
    old = os.environ.get("STUNET_CASCADE_MODEL")
    os.environ["STUNET_CASCADE_MODEL"] = str(d)
    try:
        yield d
    finally:
        if old is None:
            os.environ.pop("STUNET_CASCADE_MODEL", None)
        else:
            os.environ["STUNET_CASCADE_MODEL"] = old


@pytest.fixture(scope="module")
def client(quick_checkpoint, cascade_env):
    from gradio_client import Client
    with launched_app(quick_checkpoint) as (d, url):
        assert d.compare_tab is not None and d.compare_tab.directory == cascade_env
        yield Client(url, verbose=False)


def test_compare_endpoint(client):
    import imageio.v3 as iio
    video, xt, st_md, cas_md, info, status = client.predict(PROMPT, 5, api_name="/compare")
    path = video["video"] if isinstance(video, dict) else video
    frames = np.asarray(iio.imread(path, index=None))
    assert len(frames) == 32 and frames.shape[2] > frames.shape[1]
    assert xt.endswith(".png") and os.path.isfile(xt)
    assert st_md.startswith("**STUNet (the studio's model)**") and cas_md.startswith("**Cascade**")
    assert info["stunet_model"] == "studio"                       # the tiny cascade ships no equal-budget STUNet
    assert info["seed"] == 5 and info["keyframes"][:2] == [0, 4] and info["stunet"]["scorable"]
    assert "**Done**" in status


def test_compare_endpoint_refuses_bad_input(client):
    with pytest.raises(Exception, match="Seed"):
        client.predict(PROMPT, -3, api_name="/compare")
    with pytest.raises(Exception, match="known"):
        client.predict("zzz", 0, api_name="/compare")
