"""`vitgpt2 demo`: a local Gradio page to try a captioner, or the same app written out as a Hugging Face Space."""

import os

SPACE_REQUIREMENTS = ["transformers>=5.0,<6", "torch", "pillow", "numpy", "gradio>=5"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="Try a captioner in the browser (Gradio), or write it as a Hugging Face Space.",
        description="Starts a local page where a picture dropped (or an example clicked) gets its caption, with beams "
        "and maximum length adjustable. Needs `pip install 'vitgpt2[demo]'`.",
    )
    parser.add_argument("--model", required=True, help="Captioner folder or Hub id.")
    parser.add_argument("--examples", nargs="*", default=[], help="Image files (or folders) offered as examples.")
    parser.add_argument("--port", type=int, help="Gradio's server_port (default: 7860, or the next free one).")
    parser.add_argument("--server_name", help="Gradio's server_name, e.g. 0.0.0.0 to serve the network.")
    parser.add_argument("--share", action="store_true", help="A public gradio.live link for 72 hours.")
    parser.add_argument("--auth", help="user:password asked by the page.")
    parser.add_argument("--root_path", help="Gradio's root_path, behind a reverse proxy.")
    parser.add_argument("--title", default=None, help="The page's title.")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: GPU 0 if any).")
    parser.add_argument(
        "--write_space", metavar="DIR", help="Write app.py, requirements.txt and the Space card to DIR instead."
    )
    parser.set_defaults(func=run)


def example_files(items: list[str]) -> list[str]:
    from .caption import expand_inputs

    images, problems = expand_inputs(items)
    if problems:
        from ..errors import ArgumentError

        raise ArgumentError("; ".join(problems))
    return images


def write_space(folder: str, model: str, examples: list[str], title: str) -> list[str]:
    """Writes a Gradio Space that serves `model` (a Hub id): app.py, requirements.txt, README.md, examples/."""
    import shutil

    from ..serve import space_app

    os.makedirs(folder, exist_ok=True)
    with open(space_app.__file__, encoding="utf-8") as f:
        source = f.read()
    source = source.replace('os.environ.get("CAPTIONER", "")', f'os.environ.get("CAPTIONER", {model!r})')
    source = source.replace('TITLE = "Image captioning"', f"TITLE = {title!r}")
    files = {"app.py": source, "requirements.txt": "\n".join(SPACE_REQUIREMENTS) + "\n"}
    files["README.md"] = (
        f"---\ntitle: {title}\nemoji: 🖼️\ncolorFrom: blue\ncolorTo: green\nsdk: gradio\napp_file: app.py\n"
        f"pinned: false\nmodels:\n- {model}\n---\n\n# {title}\n\nDrop a picture to read what [{model}]"
        f"(https://huggingface.co/{model}) says about it. Written by `vitgpt2 demo --write_space`.\n"
    )
    written = []
    for name, text in files.items():
        written.append(os.path.join(folder, name))
        with open(written[-1], "w", encoding="utf-8") as f:
            f.write(text)
    if examples:
        os.makedirs(os.path.join(folder, "examples"), exist_ok=True)
        for path in examples:
            written.append(shutil.copy(path, os.path.join(folder, "examples", os.path.basename(path))))
    return written


def run(args) -> int:
    from ..errors import ArgumentError

    try:
        from ..serve.space_app import TITLE, build_app
    except ImportError as error:
        raise ArgumentError(f"vitgpt2 demo needs gradio: pip install 'vitgpt2[demo]' ({error})") from error
    examples = example_files(args.examples)
    title = args.title or TITLE
    if args.write_space:
        if os.path.isdir(args.model):
            raise ArgumentError(
                f"--write_space serves a model from the Hub, and {args.model} is a local folder: push it first "
                "(run_captioning.py --push_to_hub) and give its Hub id"
            )
        for path in write_space(args.write_space, args.model, examples, title):
            print(path)
        return 0
    if os.path.isdir(args.model):
        from ..model import check_captioner

        check_captioner(args.model)
    auth = tuple(args.auth.split(":", 1)) if args.auth else None
    from ..inference import captioning_pipeline  # also for captioners saved without the pipeline code

    build_app(captioning_pipeline(args.model, device=args.device), examples, title).launch(
        server_port=args.port, server_name=args.server_name, share=args.share, auth=auth, root_path=args.root_path
    )
    return 0
