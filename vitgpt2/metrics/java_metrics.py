"""METEOR and SPICE through pycocoevalcap, which runs them in Java (`pip install 'vitgpt2[coco]'`)."""

import importlib.util
import os
import shutil
from collections.abc import Sequence

JAVA_METRICS = ("meteor", "spice")


def java_metric_unavailable(metric: str) -> str | None:
    """Why `metric` ("meteor" / "spice") cannot run here, or None when it can."""
    if importlib.util.find_spec("pycocoevalcap") is None:
        return "pycocoevalcap is not installed (pip install 'vitgpt2[coco]')"
    if shutil.which("java") is None:
        return "Java is not on PATH (install a Java runtime, e.g. OpenJDK 11+)"
    if metric == "spice":
        spice_dir = os.path.dirname(importlib.util.find_spec("pycocoevalcap.spice").origin)
        if not os.path.isfile(os.path.join(spice_dir, "lib", "stanford-corenlp-3.6.0.jar")):
            return (
                "SPICE's Stanford CoreNLP models are missing; fetch them once, online, with `python -c 'from "
                "pycocoevalcap.spice.get_stanford_models import get_stanford_models as g; g()'`"
            )
    return None


def java_metric(metric: str):
    if metric == "meteor":
        from pycocoevalcap.meteor.meteor import Meteor

        return Meteor()
    from pycocoevalcap.spice.spice import Spice

    return Spice()


def java_inputs(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> tuple[dict, dict]:
    # "|" is METEOR's field separator on its stdin protocol: a caption containing "|||" would shift every field.
    def clean(text):
        return " ".join(text.replace("|", " ").split())

    gts = {i: [clean(ref) for ref in image_refs] for i, image_refs in enumerate(refs)}
    res = {i: [clean(hyp)] for i, hyp in enumerate(hyps)}
    return gts, res
