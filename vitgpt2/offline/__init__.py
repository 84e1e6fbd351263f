"""Offline stand-ins for the demo and the tests: a synthetic captioning set, tiny models in hub layout, and the real
models that ship inside PyPI packages. Nothing here is used by training on real data."""
