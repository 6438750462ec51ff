"""STUNet studio: ``python app.py`` locally; the same file runs the Hugging Face Space.

GRADIO_SERVER_NAME / GRADIO_SERVER_PORT work as usual; STUNET_MODEL picks the checkpoint, STUNET_DEVICE
(auto, cpu, cuda) where it runs: CUDA where torch sees a GPU, unless told otherwise.
"""
import demo.gpu  # noqa: F401 - first: imports the `spaces` package (ZeroGPU) where installed, before torch
from demo.app import demo, launch_options

if __name__ == "__main__":
    demo.launch(**launch_options())
