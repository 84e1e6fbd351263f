"""vitgpt2: fine-tune, evaluate, publish and serve ViT + GPT-2 image captioners with the Hugging Face stack."""

__version__ = "0.1.0"
