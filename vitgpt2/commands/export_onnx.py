"""`vitgpt2 export-onnx`: a saved captioner as ONNX graphs that `vitgpt2 caption --backend onnx` runs without PyTorch."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export-onnx",
        help="Export a captioner to ONNX (encoder, decoder and decoder with its KV cache), optionally int8.",
        description="Writes encoder.onnx, decoder.onnx and decoder_with_past.onnx (batch and cache length dynamic) "
        "with the tokenizer, image processor and generation config to --output. `vitgpt2 caption --backend onnx "
        "--model OUTPUT` captions with onnxruntime.",
    )
    parser.add_argument("--model", required=True, help="A captioner folder (as run_captioning.py saves it).")
    parser.add_argument("--output", required=True, help="The folder to write.")
    parser.add_argument("--int8", action="store_true", help="Quantize the weights to int8 (onnxruntime, dynamic).")
    parser.set_defaults(func=run)


def run(args) -> int:
    import os

    from vitgpt2.export.onnx import export_onnx
    from vitgpt2.model import check_captioner

    check_captioner(args.model)
    for path in export_onnx(args.model, args.output, int8=args.int8):
        print(f"{path}\t{os.path.getsize(path) / 1e6:.1f} MB")
    return 0
