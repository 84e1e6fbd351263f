"""CLIPScore and RefCLIPScore (Hessel et al. 2021): how well a caption matches its image, with no reference needed.

CLIP-S = w * max(cos(image, caption), 0) with w = 2.5; RefCLIP-S is the harmonic mean of CLIP-S and the caption's
best clipped cosine similarity with the image's references. Both on a 0-100 scale here (x 100, as the paper's tables
print them). The caption goes to CLIP as it is, as torchmetrics' `CLIPScore` does (the paper also prefixed "A photo
depicts"); one longer than CLIP's 77-token context keeps its first 76 tokens and its end token, where torchmetrics
cuts at 77 and loses the end token. The CLIP model (`--clip_model`, a folder or Hub id) loads at the first score.
"""

from functools import cached_property

from ..errors import UserError

WEIGHT = 2.5


class ClipScoreUnavailable(UserError, ValueError):
    """The CLIP model cannot be loaded; the message says what to do."""


class ClipScore:
    def __init__(self, model: str, device: str | None = None, batch_size: int = 64):
        self.model_name, self.device, self.batch_size = model, device, batch_size

    @cached_property
    def _model_and_processor(self):
        import torch
        from transformers import AutoProcessor, CLIPModel

        try:
            model = CLIPModel.from_pretrained(self.model_name)
            processor = AutoProcessor.from_pretrained(self.model_name)
        except OSError as error:
            reason = " ".join(str(error).split())
            raise ClipScoreUnavailable(
                f"CLIPScore needs the CLIP model {self.model_name!r}, which could not be loaded ({reason}). Pass a "
                "local CLIP folder or a Hub id with --clip_model, or leave clipscore and refclipscore out of --metrics"
            ) from error
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        return model.to(device).eval(), processor

    def _features(self, kind: str, items: list):
        import torch

        model, processor = self._model_and_processor
        get = model.get_image_features if kind == "images" else model.get_text_features
        chunks = []
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            inputs = processor(
                **{kind: batch},
                return_tensors="pt",
                **(self._text_options(model) if kind == "text" else {}),
            )
            with torch.no_grad():
                output = get(**inputs.to(model.device))
            features = output if torch.is_tensor(output) else output.pooler_output  # transformers 5 returns outputs
            chunks.append(torch.nn.functional.normalize(features.float(), dim=-1))
        return torch.cat(chunks)

    @staticmethod
    def _text_options(model) -> dict:
        # captions longer than CLIP's context are cut there, as torchmetrics does
        return {"padding": True, "truncation": True, "max_length": model.config.text_config.max_position_embeddings}

    def score(self, predictions: list[str], references: list[list[str]] | None, images: list) -> list[dict]:
        """Per image: `clipscore`, and `refclipscore` when `references` are given (0-1 scale)."""
        captions = self._features("text", list(predictions))
        clip_s = WEIGHT * (self._features("images", list(images)) * captions).sum(-1).clamp(min=0)
        rows = [{"clipscore": float(value)} for value in clip_s]
        if references is not None:
            flat = [ref for image_refs in references for ref in image_refs]
            ref_features = self._features("text", flat)
            start = 0
            for row, caption, image_refs in zip(rows, captions, references):
                similarity = (ref_features[start : start + len(image_refs)] @ caption).max().clamp(min=0)
                start += len(image_refs)
                total = row["clipscore"] + float(similarity)
                row["refclipscore"] = 2 * row["clipscore"] * float(similarity) / total if total > 0 else 0.0
        return rows
