"""STUNet: shapes per level, inflation identities, resampling init, config errors."""
import dataclasses

import pytest
import torch

from conftest import make_tiny
from stunet.config import PRESETS, STUNetConfig, preset
from stunet.layers import TemporalDown, TemporalUp
from stunet.model import STUNet, describe_pyramid, inflate, is_temporal_param


def _text(model, b=1):
    ids = torch.zeros(b, model.config.max_words + 1, dtype=torch.long)
    ids[:, 0] = 1
    ids[:, 1:4] = torch.tensor([5, 12, 15])
    return model.encode_text(ids)


@pytest.mark.parametrize("frames", [4, 8, 12, 24])
def test_level_shapes_follow_the_pyramid(tiny_model, frames):
    m = tiny_model
    feats = {}
    hooks = [lvl.register_forward_hook(lambda mod, a, o, i=i: feats.__setitem__(i, (o.shape, a[3])))
             for i, lvl in enumerate(m.enc)]
    try:
        x = torch.randn(2, 3, frames, 16, 16)
        with torch.no_grad():
            y = m(x, torch.tensor([3, 900]), _text(m, 2))
    finally:
        for h in hooks:
            h.remove()
    assert y.shape == x.shape
    for i, lv in enumerate(describe_pyramid(m.config, frames)):
        (bt, c, h, w), t = feats[i]
        assert (bt, c, h, w, t) == (2 * lv.frames, lv.channels, lv.height, lv.width, lv.frames)
    assert describe_pyramid(m.config, frames)[-1].frames == frames // 2


def test_shapes_preset_pyramid_downsamples_time_to_eight_frames():
    levels = describe_pyramid(preset("shapes"))
    assert [(l.frames, l.height) for l in levels] == [(32, 32), (16, 16), (8, 8)]
    assert [l.temporal_attention for l in levels] == [0, 0, 2]          # attention only at the coarsest
    assert [l.temporal_conv for l in levels] == [True, True, False]    # factorized convs elsewhere
    vdm = describe_pyramid(preset("vdm"))
    assert [l.frames for l in vdm] == [32, 32, 32] and all(l.temporal_attention for l in vdm)


def test_bad_frame_count_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="divisible by the temporal factor 2"):
        tiny_model(torch.randn(1, 3, 7, 16, 16), torch.tensor([1]), _text(tiny_model))


@pytest.mark.parametrize("bad", [dict(channels=(16, 30)), dict(channels=(16, 10**6)), dict(frames=7),
                                 dict(temporal_down=(True, True)), dict(height=17), dict(vocab_size=10**9),
                                 dict(prediction_type="x"), dict(frames=True)])
def test_bad_configs_raise(bad):
    with pytest.raises(ValueError, match="invalid STUNetConfig"):
        preset("tiny", **bad)


def test_config_json_round_trip_and_unknown_keys():
    for name in PRESETS:
        cfg = preset(name)
        assert STUNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown keys"):
        STUNetConfig.from_dict({**preset("tiny").to_dict(), "evil": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        preset("tiny").frames = 4


def _perturbed_image_unet(cfg, seed=0):
    img = STUNet(cfg.image())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in img.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return img.eval()


def _per_frame(img, x, ids_text, t):
    return torch.cat([img(x[:, :, i:i + 1], t, ids_text) for i in range(x.shape[2])], dim=2)


@torch.no_grad()
def test_inflated_stunet_without_time_resampling_equals_image_unet_per_frame():
    cfg = preset("tiny", temporal_down=(False,))
    img = _perturbed_image_unet(cfg)
    vid = inflate(img, cfg).eval()
    x = torch.randn(2, 3, 8, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([10, 700])
    y_vid = vid(x, t, _text(vid, 2))
    y_img = _per_frame(img, x, _text(img, 2), t)
    torch.testing.assert_close(y_vid, y_img, rtol=0, atol=2e-5)
    # and the temporal branch really is wired in: perturbing it changes the output
    with torch.no_grad():
        for n, p in vid.named_parameters():
            if is_temporal_param(n):
                p.add_(0.1)
    assert (vid(x, t, _text(vid, 2)) - y_img).abs().max() > 1e-2


@torch.no_grad()
def test_inflated_stunet_with_time_resampling_equals_image_unet_on_a_static_clip():
    cfg = preset("tiny")
    img = _perturbed_image_unet(cfg)
    vid = inflate(img, cfg).eval()
    frame = torch.randn(1, 3, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    static = frame.expand(-1, -1, 8, -1, -1).contiguous()
    t = torch.tensor([400])
    y_vid = vid(static, t, _text(vid))
    y_img = img(frame, t, _text(img)).expand(-1, -1, 8, -1, -1)
    torch.testing.assert_close(y_vid, y_img, rtol=0, atol=2e-5)
    # a moving clip is NOT reproduced frame by frame (time is resampled)
    moving = torch.randn(1, 3, 8, 16, 16, generator=torch.Generator().manual_seed(3))
    assert (vid(moving, t, _text(vid)) - _per_frame(img, moving, _text(img), t)).abs().max() > 1e-3


def test_inflate_rejects_mismatched_configs():
    img = STUNet(preset("tiny").image())
    with pytest.raises(ValueError, match="differ"):
        inflate(img, preset("tiny", channels=(32, 32)))
    with pytest.raises(ValueError, match="image U-Net"):
        inflate(STUNet(preset("tiny")), preset("tiny"))


def test_image_unet_has_no_temporal_parameters_and_stunet_adds_only_temporal_ones():
    cfg = preset("tiny")
    img_keys = set(STUNet(cfg.image()).state_dict())
    vid_keys = set(STUNet(cfg).state_dict())
    assert img_keys < vid_keys
    assert all(is_temporal_param(k) for k in vid_keys - img_keys)
    assert not any(is_temporal_param(k) for k in img_keys)


def test_temporal_resampling_init_is_nearest_neighbour():
    model = STUNet(preset("tiny"))                      # init lives in initialize_weights
    down, up = model.down[0].temporal, model.up[0].temporal
    assert isinstance(down, TemporalDown) and isinstance(up, TemporalUp)
    c = down.conv.in_channels
    x = torch.randn(2 * 8, c, 3, 3)                     # (b t) c h w, b=2, t=8
    cu = up.conv.in_channels
    z = torch.randn(2 * 4, cu, 3, 3)
    with torch.no_grad():
        d = down(x, 8)
        u = up(z, 4).reshape(2, 8, cu, 3, 3)
    xs = x.reshape(2, 8, c, 3, 3)
    torch.testing.assert_close(d.reshape(2, 4, c, 3, 3), xs[:, ::2])            # keeps frames 0, 2, 4, ...
    torch.testing.assert_close(u, z.reshape(2, 4, cu, 3, 3).repeat_interleave(2, dim=1))   # duplicates them


def test_temporal_attention_and_convs_start_as_identity():
    m = STUNet(preset("tiny"))
    zero_init = ("temporal_conv.conv2.weight", "temporal_attn.0.proj.weight", "temporal_attn.0.ff.2.weight",
                 "stride_mlp.2.weight")
    checked = set()
    for name, p in m.named_parameters():
        if name.endswith(zero_init):
            assert torch.count_nonzero(p) == 0, name
            checked.add(next(s for s in zero_init if name.endswith(s)))
    assert checked == set(zero_init), f"no parameter named like {set(zero_init) - checked}"


def test_frame_rate_conditioning_changes_the_output_once_trained():
    m = make_tiny()
    x = torch.randn(1, 3, 8, 16, 16)
    with torch.no_grad():
        a = m(x, torch.tensor([500]), _text(m), stride=1)
        b = m(x, torch.tensor([500]), _text(m), stride=4)
    assert (a - b).abs().max() > 1e-4


def test_conditioning_channels_are_used(tiny_model):
    x = torch.randn(1, 3, 8, 16, 16)
    cond = torch.randn(1, 3, 8, 16, 16)
    mask = torch.zeros(1, 1, 8, 16, 16)
    mask[:, :, 0] = 1
    with torch.no_grad():
        a = tiny_model(x, torch.tensor([500]), _text(tiny_model))
        b = tiny_model(x, torch.tensor([500]), _text(tiny_model), cond=cond, mask=mask)
    assert (a - b).abs().max() > 1e-4


def test_frame_time_embedding_starts_at_zero_and_upgrades_keep_the_function():
    from stunet.train import add_new_parameters
    old = make_tiny(frame_embedding=False)                    # a trained model from before the field
    new = STUNet(old.config.replace(frame_embedding=True)).eval()
    assert torch.count_nonzero(new.frame_mlp[-1].weight) == 0
    new.load_state_dict(add_new_parameters(new, old.state_dict()))
    x = torch.randn(2, 3, 8, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(new(x, torch.tensor([5, 900]), _text(new, 2), stride=2),
                                   old(x, torch.tensor([5, 900]), _text(old, 2), stride=2))
    # the frame's time is the only thing telling frames of a static clip apart (other temporal parts at init)
    fresh = STUNet(new.config).state_dict()
    with torch.no_grad():
        for name, p in new.named_parameters():
            if is_temporal_param(name) and not name.startswith("frame_mlp."):
                p.copy_(fresh[name])
        static = torch.randn(1, 3, 1, 16, 16).expand(1, 3, 8, 16, 16)
        y0 = new(static, torch.tensor([500]), _text(new))
        new.frame_mlp[-1].weight.normal_(0, 0.05)
        y1 = new(static, torch.tensor([500]), _text(new))
    torch.testing.assert_close(y0[:, :, 0], y0[:, :, -1])
    assert (y1[:, :, 0] - y1[:, :, -1]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="cannot upgrade"):
        add_new_parameters(new, {k: v for k, v in old.state_dict().items() if "stride_mlp" not in k})


# ---------------------------------------------------------------- temporal ops on the channels-last grid
def _columns_reference(x, t, norm, conv):
    """The textbook form: (b t) c h w -> (b h w) c t columns, GroupNorm + 1D conv, and back."""
    from stunet.layers import columns_to_frames, frames_to_columns
    bt, c, h, w = x.shape
    col = conv(torch.nn.functional.silu(norm(frames_to_columns(x, t))))
    return columns_to_frames(col, bt // t, h, w)


def test_grid_temporal_ops_equal_1d_ops_on_columns():
    import torch.nn.functional as F

    from stunet.layers import column_group_norm, frames_to_grid, grid_to_frames, temporal_conv
    torch.manual_seed(0)
    b, t, c, h, w = 2, 8, 16, 4, 6
    x = torch.randn(b * t, c, h, w).contiguous(memory_format=torch.channels_last)
    norm, conv = torch.nn.GroupNorm(4, c), torch.nn.Conv1d(c, c, 3, padding=1)
    with torch.no_grad():
        norm.weight.normal_(1, 0.2), norm.bias.normal_(0, 0.2)
    v = frames_to_grid(x, t)
    assert v.data_ptr() == x.data_ptr() and v.shape == (b, c, t, h * w)          # a view
    got = grid_to_frames(temporal_conv(F.silu(column_group_norm(v, norm)), conv), h, w)
    assert torch.allclose(got, _columns_reference(x, t, norm, conv), atol=1e-5)
    assert got.is_contiguous(memory_format=torch.channels_last)
    down = torch.nn.Conv1d(c, c, 3, padding=1, stride=2)
    from stunet.layers import columns_to_frames, frames_to_columns
    ref = columns_to_frames(down(frames_to_columns(x, t)), b, h, w)
    assert torch.allclose(grid_to_frames(temporal_conv(v, down), h, w), ref, atol=1e-5)


def test_temporal_up_duplicates_frames_then_convolves():
    from stunet.layers import TemporalUp, columns_to_frames, frames_to_columns
    torch.manual_seed(1)
    up = TemporalUp(8)
    with torch.no_grad():
        up.conv.weight.normal_(0, 0.3)
    b, t, h, w = 2, 4, 3, 5
    x = torch.randn(b * t, 8, h, w).contiguous(memory_format=torch.channels_last)
    ref = columns_to_frames(up.conv(frames_to_columns(x, t).repeat_interleave(2, dim=2)), b, h, w)
    assert torch.allclose(up(x, t), ref, atol=1e-5)


def test_temporal_conv_gradients_are_finite_under_bf16_autocast_on_two_frames():
    """The NaN seen with a (3,1,1) Conv3d under CPU bf16 autocast on 2 frames must not come back."""
    from stunet.layers import TemporalConv
    torch.manual_seed(2)
    m = TemporalConv(16, 4)
    with torch.no_grad():
        m.conv2.weight.normal_(0, 0.1)
    x = torch.randn(2 * 2, 16, 8, 8).contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m(x, 2).float().square().mean()
    loss.backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())
