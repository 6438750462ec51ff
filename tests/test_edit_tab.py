"""The studio's Edit tab handlers (demo.editing), in process on the tiny model: uploads (GIF, image, hostile
files), drawn or uploaded masks, the three edits, their records, and the Inspect tab on the result."""
import io
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from test_video_decode import gif_bytes

from demo.files import upload_folder
from demo.limits import LimitError
from stunet.video import write_video
from stunet.video_decode import decode_video

STEPS = 2


@pytest.fixture(scope="module")
def tab(tiny_model, tiny_tokenizer):
    from demo.editing import EditTab
    from demo.studio import Studio
    from stunet.pipeline import Pipeline
    return EditTab(Studio(Pipeline(tiny_model, tiny_tokenizer, "fp32")))


@pytest.fixture(scope="module")
def updir():
    d = upload_folder() / f"test-edit-{uuid.uuid4().hex[:8]}"
    d.mkdir(parents=True)
    yield d
    import shutil
    shutil.rmtree(d, ignore_errors=True)


def _clip(t=8):
    v = np.zeros((t, 16, 16, 3), np.uint8)
    for i in range(t):
        v[i, 4:10, i:i + 6] = (230, 40, 40)
    return v


@pytest.fixture(scope="module")
def gif(updir):
    return {"path": str(write_video(updir / "in.gif", _clip(), scale=2))}


def _mask_png(path, rgba=False):
    m = np.zeros((64, 64), np.uint8)
    m[16:40, 8:48] = 255                       # at 16x16: rows 4-9, columns 2-11
    if rgba:
        Image.fromarray(np.dstack([m, m * 0, m, m]), "RGBA").save(path)
    else:
        Image.fromarray(m).save(path)
    want = np.zeros((16, 16), bool)
    want[4:10, 2:12] = True
    return want


def _final(gen):
    outs = list(gen)
    assert len(outs) >= 2                      # step updates, then the result
    return outs[-1]


def test_inpaint_from_an_uploaded_gif_and_mask_png(tab, gif, updir):
    want = _mask_png(updir / "mask.png")
    src, mp4, settings, status, rec = _final(tab.inpaint(None, "upload", gif, {"path": str(updir / "mask.png")},
                                                         "a red circle moving right", 1, STEPS, 3.0, 8))
    video = decode_video(gif["path"], (16, 16))
    assert rec.video.shape == (8, 16, 16, 3)
    assert np.array_equal(rec.video[:, ~want], video[:, ~want])
    assert mp4.endswith(".mp4") and src.endswith(".mp4")
    assert settings["mode"] == "inpaint" and settings["steps_run"] == STEPS
    assert "psnr_given_before_paste_db" in settings and "**Done**" in status
    assert rec.edit["mode"] == "inpaint"


def test_cinemagraph_from_an_image_with_a_drawn_layer_and_inspect_works(tab, updir):
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(img).save(updir / "still.png")
    want = _mask_png(updir / "layer.png", rgba=True)
    editor = {"background": None, "layers": [{"path": str(updir / "layer.png")}], "composite": None}
    *_, rec = _final(tab.cinemagraph(None, "upload", {"path": str(updir / "still.png")}, editor,
                                     "a red square spinning", 0, STEPS, 3.0, 8))
    assert (rec.video[:, ~want] == rec.video[0][~want][None]).all()
    views = tab.studio.render_all(rec)                    # the Inspect tab on the result
    assert views.features_img is not None and "Inspecting" in views.inspect_info


def test_browser_drawn_blobs_and_video_to_video_from_the_last_clip(tab, gif, updir):
    _mask_png(updir / "mask.png")
    *_, rec = _final(tab.inpaint(None, "upload", gif, {"path": str(updir / "mask.png")}, "a red circle", 0, STEPS,
                                 3.0, 8))
    buf = io.BytesIO()
    rgba = np.zeros((64, 64, 4), np.uint8)
    rgba[0:16, 0:16] = 255
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    tab.mask_component = SimpleNamespace(blob_storage={"abc": SimpleNamespace(layers=[buf.getvalue()])})
    try:
        m = tab.mask_of({"id": "abc", "background": None, "layers": [], "composite": None}, "mask")
    finally:
        tab.mask_component = None
    assert m.sum() == 16 and m[:4, :4].all()
    src, mp4, settings, status, rec2 = _final(tab.video_to_video(rec, "last", None, "a blue circle", 0, 4, 3.0,
                                                                 0.5, 8))
    assert settings["mode"] == "video_to_video" and settings["strength"] == 0.5 and settings["steps_run"] == 2
    assert rec2.settings.steps == 2 and "strength 0.5" in status


@pytest.mark.parametrize("make,match", [
    (lambda d: {"path": "/etc/passwd"}, "uploaded to this app"),
    (lambda d: (d / "pl.mp4").write_text("#EXTM3U\nfile:///etc/passwd\n") and {"path": str(d / "pl.mp4")},
     "not a GIF, MP4"),
    (lambda d: (d / "long.gif").write_bytes(gif_bytes(10_000)) and {"path": str(d / "long.gif")}, "more than"),
])
def test_hostile_uploads_are_clear_errors(tab, updir, make, match):
    with pytest.raises(LimitError, match=match):
        _final(tab.video_to_video(None, "upload", make(updir), "a red circle", 0, STEPS, 3.0, 0.5, 8))


def test_bad_edit_requests(tab, gif, updir):
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(updir / "black.png")
    with pytest.raises(LimitError, match="mask is empty"):
        _final(tab.inpaint(None, "upload", gif, {"path": str(updir / "black.png")}, "a red circle", 0, STEPS, 3.0, 8))
    with pytest.raises(LimitError, match="Strength"):
        _final(tab.video_to_video(None, "upload", gif, "a red circle", 0, STEPS, 3.0, 0.0, 8))
    with pytest.raises(LimitError, match="No clip yet"):
        _final(tab.video_to_video(None, "last", None, "a red circle", 0, STEPS, 3.0, 0.5, 8))
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(updir / "img.png")
    with pytest.raises(LimitError, match="need a clip"):
        _final(tab.video_to_video(None, "upload", {"path": str(updir / "img.png")}, "a red circle", 0, STEPS, 3.0,
                                  0.5, 8))


def test_load_puts_the_enlarged_input_under_the_brush(tab, gif):
    value, shown, note = tab.load(None, "upload", gif)
    bg = np.asarray(Image.open(value["background"]))
    assert bg.shape[0] >= 128 and bg.shape[0] == bg.shape[1] and value["layers"] == []
    assert shown.endswith(".mp4") and "8 frames" in note


def test_choosing_an_input_puts_it_under_the_brush_at_once(tab, gif):
    """No 'Use this input' step: the last clip (with its prompt as the edit prompt) or an upload is shown as soon
    as it is chosen, and a new clip follows while the input is the last clip."""
    import gradio as gr
    from demo.editing import SOURCE_LAST, SOURCE_UPLOAD
    value, shown, note, prompt = tab.show(None, SOURCE_LAST, None)       # no clip yet: a hint, not an error
    assert value is None and shown is None and "No clip yet" in note and isinstance(prompt, type(gr.skip()))
    rec = list(tab.studio.generate("a blue square moving left", 4, STEPS, 3.0, 8))[-1][-1]
    value, shown, note, prompt = tab.show(rec, SOURCE_LAST, None)
    bg = np.asarray(Image.open(value["background"]).convert("RGB"))
    np.testing.assert_array_equal(bg, tab.canvas(rec.video))             # that clip, every frame overlaid
    assert value["layers"] == [] and shown == rec.mp4 and "8 frames" in note    # its own MP4, no new folder
    assert prompt == "a blue square moving left"                         # the edit prompt starts from the clip's
    source, value, shown, note, prompt = tab.uploaded(rec, gif)          # an upload becomes the input
    assert source == SOURCE_UPLOAD and value["background"] and isinstance(prompt, type(gr.skip()))
    assert all(isinstance(x, type(gr.skip())) for x in tab.follow(rec, SOURCE_UPLOAD))
    assert tab.follow(rec, SOURCE_LAST)[3] == "a blue square moving left"
    assert tab.cleared(rec, SOURCE_UPLOAD)[0] is None
    assert all(isinstance(x, type(gr.skip())) for x in tab.cleared(rec, SOURCE_LAST))


def test_the_edit_tab_is_wired_to_show_inputs_and_follow_generate(tiny_model, tiny_tokenizer):
    from demo.app import build_demo
    from stunet.pipeline import Pipeline
    d = build_demo(Pipeline(tiny_model, tiny_tokenizer, "fp32"), warm=False, janitor=False)
    try:
        assert not any(getattr(b, "elem_id", None) == "edit-load" for b in d.blocks.values())   # no extra button
        by_id = {b.elem_id: b._id for b in d.blocks.values() if getattr(b, "elem_id", None)}
        fns = list(d.fns.values())
        name = lambda f: getattr(f.fn, "__name__", "")                                   # noqa: E731
        gen = next(f for f in fns if f.api_name == "generate")
        follow = [f for f in fns if name(f) == "follow" and f.trigger_after == gen._id]
        assert len(follow) == 1 and follow[0].trigger_only_on_success
        outs = {b._id for b in follow[0].outputs}
        assert {by_id["edit-mask"], by_id["edit-prompt"], by_id["edit-input"]} <= outs
        show = [f for f in fns if name(f) == "show"]
        assert len(show) == 1 and (by_id["edit-source"], "input") in [(t[0], t[1]) for t in show[0].targets]
        assert any(name(f) == "uploaded" and (by_id["edit-upload"], "upload") in [(t[0], t[1]) for t in f.targets]
                   for f in fns)
    finally:
        d.close()


def test_the_image_mask_blob_route_is_bounded():
    """The ImageMask's accept_blobs server function: a huge layer index, a big file or many drawings are refused
    or bounded (Gradio would extend a list to any index, and keep every drawing)."""
    import gradio as gr
    from gradio.components.image_editor import AcceptBlobs

    from demo.editing import MAX_BLOB_IDS, harden_image_mask
    with gr.Blocks():
        mask = gr.ImageMask()
    harden_image_mask(mask)
    assert getattr(mask.accept_blobs, "_is_server_fn", False)

    def send(index="0", size=10, id_="a", kind="layer"):
        mask.accept_blobs(AcceptBlobs(data={"type": kind, "index": index, "id": id_, "file": b""},
                                      files=[("blob", b"x" * size)]))

    for bad in (dict(index="1000000000"), dict(index="-1"), dict(size=3 * 2**20), dict(kind="other")):
        with pytest.raises(gr.Error):
            send(**bad)
    assert len(mask.blob_storage) == 0
    send(index="1")
    assert len(mask.blob_storage["a"].layers) == 2
    for i in range(MAX_BLOB_IDS + 10):
        send(id_=f"id{i}")
    assert len(mask.blob_storage) == MAX_BLOB_IDS and "id0" not in mask.blob_storage


def test_the_guard_bounds_component_server_bodies():
    import asyncio

    from demo.guard import RequestGuard
    reached = []

    async def inner(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})

    def status(headers):
        sent = []

        async def send(msg):
            sent.append(msg)

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        scope = {"type": "http", "path": "/gradio_api/component_server/", "method": "POST", "headers": headers}
        asyncio.run(RequestGuard(inner, max_upload_bytes=1000)(scope, receive, send))
        return sent[0]["status"]

    assert status([(b"content-length", b"1001")]) == 413
    assert status([]) == 411
    assert not reached
    assert status([(b"content-length", b"1000")]) == 200
