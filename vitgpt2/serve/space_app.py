"""The captioning demo page (Gradio): drop a picture, read its caption; beams and length adjustable.

This file is the whole app. `vitgpt2 demo` imports `build_app` from it; `vitgpt2 demo --write_space DIR` copies it
as a Hugging Face Space's `app.py` with the model filled in, where it needs only gradio and transformers (the
captioner's own pipeline code comes with the model, through `trust_remote_code=True`).
"""

import os

import gradio as gr
from transformers import pipeline

MODEL = os.environ.get("CAPTIONER", "")  # a Hub id or folder; `--write_space` writes the model in here
TITLE = "Image captioning"


def load_captioner(model: str, device=None):
    return pipeline("image-to-text", model=model, trust_remote_code=True, device=device)


def build_app(captioner, examples: list[str] | None = None, title: str = TITLE) -> gr.Blocks:
    """The page: an image in, its caption out, with the number of beams and the caption's maximum length."""

    def caption(image, num_beams, max_new_tokens):
        if image is None:
            raise gr.Error("Drop a picture first.")
        outputs = captioner(image, num_beams=int(num_beams), max_new_tokens=int(max_new_tokens))
        return outputs[0]["generated_text"]

    with gr.Blocks(title=title) as app:
        gr.Markdown(f"# {title}\nDrop a picture (or click an example) to read what the captioner says about it.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(type="pil", label="Picture", elem_id="picture")
                num_beams = gr.Slider(1, 8, value=3, step=1, label="Beams", elem_id="num_beams")
                max_new_tokens = gr.Slider(4, 64, value=32, step=1, label="Maximum length (tokens)")
                button = gr.Button("Caption", variant="primary", elem_id="caption_button")
            text = gr.Textbox(label="Caption", elem_id="caption", interactive=False)
        inputs = [image, num_beams, max_new_tokens]
        button.click(caption, inputs=inputs, outputs=text)
        image.upload(caption, inputs=inputs, outputs=text)
        if examples:
            gr.Examples(examples=[[path] for path in examples], inputs=image)
    return app


if __name__ == "__main__":
    examples = (
        sorted(os.path.join("examples", name) for name in os.listdir("examples"))
        if os.path.isdir("examples")
        else None
    )
    build_app(load_captioner(MODEL), examples).launch()
