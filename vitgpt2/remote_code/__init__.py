"""The code copied next to every saved captioner, so that `pipeline("image-to-text", model=..., trust_remote_code=True)`
loads it where vitgpt2 is not installed.

The rule of this folder: its modules import only the standard library, torch, PIL, numpy, transformers and each
other (relatively, so that transformers copies them along). tests/remote_code/test_imports.py enforces it. Training
imports from here too, so that a saved model is served with exactly the code it was trained with.
"""
