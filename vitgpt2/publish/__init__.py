"""The end of a run: the model card, its pictures, the pipeline code next to the model, and the upload."""
