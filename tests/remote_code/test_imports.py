"""`vitgpt2/remote_code/` is copied next to every saved model and runs where vitgpt2 is not installed: its modules
may import only the standard library, torch, PIL, numpy, transformers and each other (relatively)."""

import ast
import os
import sys

import pytest

import vitgpt2.remote_code

ALLOWED = {"torch", "PIL", "numpy", "transformers"}
REMOTE_CODE = os.path.dirname(vitgpt2.remote_code.__file__)
MODULES = sorted(name for name in os.listdir(REMOTE_CODE) if name.endswith(".py"))


def imported(source: str) -> list[tuple[str, int]]:
    """(top-level name, level) of every import in `source`, at any depth: level > 0 is relative."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(alias.name.split(".")[0], 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append(((node.module or "").split(".")[0], node.level))
    return found


def disallowed(source: str, siblings: set[str]) -> list[str]:
    problems = []
    for name, level in imported(source):
        if level == 0 and name not in ALLOWED and name not in sys.stdlib_module_names:
            problems.append(name)
        elif level == 1 and name and name not in siblings:
            problems.append(f".{name} (not a module of remote_code/)")
        elif level > 1:
            problems.append(f"{'.' * level}{name} (outside remote_code/)")
    return problems


@pytest.mark.parametrize("module", MODULES)
def test_remote_code_imports_only_the_standard_library_torch_pil_numpy_transformers_and_itself(module):
    with open(os.path.join(REMOTE_CODE, module), encoding="utf-8") as f:
        source = f.read()
    siblings = {name.removesuffix(".py") for name in MODULES}
    assert disallowed(source, siblings) == [], f"remote_code/{module} imports what a Hub user may not have"


def test_the_check_catches_what_must_not_be_shipped():
    siblings = {"images", "pipeline"}
    assert disallowed("import vitgpt2.data", siblings) == ["vitgpt2"]
    assert disallowed("from ..loss import IGNORE_INDEX", siblings) == ["..loss (outside remote_code/)"]
    assert disallowed("def f():\n    from datasets import Dataset\n", siblings) == ["datasets"]
    assert disallowed("from .trainer import x", siblings) == [".trainer (not a module of remote_code/)"]
    assert (
        disallowed("import json\nimport torch.nn\nfrom PIL import Image\nfrom .images import load_rgb", siblings) == []
    )
