"""STUNet studio: ``python app.py`` locally; the same file runs the Hugging Face Space.

GRADIO_SERVER_NAME / GRADIO_SERVER_PORT work as usual; STUNET_MODEL picks the checkpoint, STUNET_DEVICE
(auto, cpu, cuda) where it runs: CUDA where torch sees a GPU, unless told otherwise.
"""
import os

# numpy's OpenBLAS pool, single-threaded, before numpy is imported: an Inspect view's matrix product (OpenBLAS
# threads) beside Generate starting ffmpeg (a fork) deadlocked the server in a 4-client soak; torch keeps its own
# threads. The views' products are small.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import demo.gpu  # noqa: E402,F401 - first: imports the `spaces` package (ZeroGPU) where installed, before torch
from demo.app import demo, launch_options  # noqa: E402

if __name__ == "__main__":
    demo.launch(**launch_options())
