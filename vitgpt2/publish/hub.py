"""Publishing a trained captioner folder to the Hugging Face Hub, without checkpoints, logs or secrets.

What is uploaded is an allow-list (weights, configs, tokenizer and processor files, pipeline code, the card, its
pictures, result files), never `checkpoint-*`, `runs/` (TensorBoard logs), hidden files or `training_args.bin`:
that is a pickle of the `TrainingArguments`, hub token included. Every file of the upload set is also scanned for
the token before anything leaves the machine, and the upload is refused if one holds it.
"""

import fnmatch
import glob
import logging
import os

from huggingface_hub import HfApi, get_token

from ..errors import UserError
from .secrets import HUB_TOKEN_BYTES_PATTERN

logger = logging.getLogger(__name__)

UPLOAD_PATTERNS = (
    "*.safetensors",
    "pytorch_model*.bin",
    "*.json",
    "*.jsonl",
    "*.txt",
    "*.model",
    "*.py",
    "*.md",
    "*.png",
    "*.jpg",
    "*.jpeg",
    "*.svg",
)
# Never uploaded, even where an upload pattern matches; folders with these names are not entered.
EXCLUDED_PATTERNS = ("checkpoint-*", "runs", "wandb", "__pycache__", ".*", "training_args.bin", "*.pt", "*.pth")
TEXT_SUFFIXES = (".json", ".jsonl", ".txt", ".py", ".md")
CHUNK_BYTES = 1 << 24


class SecretInUploadError(UserError, RuntimeError):
    """A file about to be uploaded holds an access token."""


def matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def upload_files(output_dir: str) -> list[str]:
    """The files of `output_dir` to publish, as sorted paths relative to it."""
    files = []
    for root, folders, names in os.walk(output_dir):
        folders[:] = [folder for folder in folders if not matches(folder, EXCLUDED_PATTERNS)]
        for name in names:
            if matches(name, UPLOAD_PATTERNS) and not matches(name, EXCLUDED_PATTERNS):
                files.append(os.path.relpath(os.path.join(root, name), output_dir))
    return sorted(files)


def holds_secret(path: str, secrets: list[bytes]) -> bool:
    """Whether the file contains one of `secrets`, or (text files) anything shaped like a Hub token."""
    pattern = HUB_TOKEN_BYTES_PATTERN if path.endswith(TEXT_SUFFIXES) else None
    overlap = max([len(secret) for secret in secrets] + [64]) - 1  # a secret may straddle two chunks
    tail = b""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            window = tail + chunk
            if any(secret in window for secret in secrets) or (pattern and pattern.search(window)):
                return True
            tail = window[-overlap:]
    return False


def check_no_secrets(output_dir: str, files: list[str], token: str | None) -> None:
    """Raises `SecretInUploadError` naming the files (never the token) that hold the token or a token-like string."""
    secrets = [value.encode() for value in {token, get_token()} if value]
    leaking = [name for name in files if holds_secret(os.path.join(output_dir, name), secrets)]
    if leaking:
        raise SecretInUploadError(
            f"refusing to upload {output_dir}: these files contain an access token (or a string shaped like a Hub "
            f"token): {leaking}. Remove it from them, or move them out of the folder."
        )


def push_to_hub(
    output_dir: str,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Upload image captioner",
):
    """Creates `repo_id` if needed and uploads the publishable files of `output_dir` in one commit.

    `token` defaults to the logged-in one. Returns the `CommitInfo` of the upload.
    """
    if not os.path.isfile(os.path.join(output_dir, "config.json")):
        raise FileNotFoundError(f"{output_dir} holds no saved model (config.json); nothing to push")
    files = upload_files(output_dir)
    for expected in ("README.md", "pipeline.py"):
        if expected not in files:
            logger.warning("%s has no %s: the Hub repository will lack it", output_dir, expected)
    check_no_secrets(output_dir, files, token)
    api = HfApi()
    repo_id = api.create_repo(repo_id, token=token, private=private, exist_ok=True).repo_id
    logger.info("Uploading %d files to %s: %s", len(files), repo_id, ", ".join(files))
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=output_dir,
        allow_patterns=[glob.escape(name) for name in files],  # exactly the checked files, names taken literally
        commit_message=commit_message,
        token=token,
    )
