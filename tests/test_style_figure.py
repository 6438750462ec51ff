"""scripts/style_figure.py (issue 33's card figure): one row per style and strength, the same noise in each."""
import numpy as np
from conftest import load_script
from test_studio_styles import make_style

from stunet.pipeline import Pipeline, Settings

sf = load_script("style_figure")


def test_rows_share_the_noise_and_the_grid_holds_every_frame(tiny_model, tiny_tokenizer, tmp_path):
    pipe = Pipeline(tiny_model, tiny_tokenizer)
    style = make_style(tiny_model, tmp_path / "outline", "outline")
    s = Settings("a red circle moving right", seed=3, steps=2, frames=4)
    rows = sf.clip_rows(pipe, [str(style)], [0.0, 1.0], s)
    assert [label for label, _ in rows] == ["no style", "outline 0", "outline 1"]
    assert np.array_equal(rows[0][1], rows[1][1])              # strength 0: the model itself, same noise
    assert not np.array_equal(rows[0][1], rows[2][1])
    img = sf.grid(rows, [0, 3], cell=32, gap=2)
    h = rows[0][1].shape[1]
    assert img.shape == (3 * 34 - 2, 2 * 34 - 2, 3) and img.dtype == np.uint8
    k = 32 // h
    assert np.array_equal(img[68:68 + h * k:k, 34:34 + h * k:k], rows[2][1][3])   # row 3, column 2: frame 3
