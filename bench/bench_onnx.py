"""Captioning on the CPU: ONNX (fp32 and int8) with onnxruntime against PyTorch's `generate`, on the same images.

    python bench/bench_onnx.py                      # ViT-B/16 224 + distilgpt2 shapes, 32 images, 20 tokens each
    python bench/bench_onnx.py --tiny --images 8    # CI smoke run

Random weights with the real architecture's shapes, saved and exported with `vitgpt2 export-onnx`'s code. Every
side decodes exactly --max_new_tokens tokens per image (EOS held back), greedy with a KV cache, in batches of
--batch_size, with the same number of CPU threads; image decoding is left out (it is the same for all). Prints
images/s, the ratio to PyTorch, and the size of each export.
"""

import argparse
import os
import tempfile

import common
import numpy as np
import torch
from transformers import ViTImageProcessor

from vitgpt2.export.onnx import GRAPHS, OnnxCaptioner, export_onnx
from vitgpt2.offline.tiny_models import train_byte_level_bpe


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--max_new_tokens", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="Timed runs of each side, taking turns.")
    common.add_model_arguments(parser)
    args = parser.parse_args(argv)
    common.start(args)
    model = common.build_captioner(tiny=args.tiny).eval()
    size = model.config.encoder.image_size
    pixels = torch.randn(args.images, 3, size, size, generator=torch.Generator().manual_seed(0))
    fixed = {"max_new_tokens": args.max_new_tokens, "min_new_tokens": args.max_new_tokens}

    def pytorch():
        with torch.no_grad():
            for start in range(0, args.images, args.batch_size):
                model.generate(pixel_values=pixels[start : start + args.batch_size], num_beams=1, **fixed)

    with tempfile.TemporaryDirectory(prefix="bench_onnx_") as folder:
        saved = os.path.join(folder, "captioner")
        model.save_pretrained(saved)
        ViTImageProcessor(size={"height": size, "width": size}).save_pretrained(saved)
        train_byte_level_bpe(["a caption"], vocab_size=300).save_pretrained(saved)  # exported alongside, unused here
        sides, sizes = {"PyTorch generate": pytorch}, {}
        for precision in ("fp32", "int8"):
            output = os.path.join(folder, precision)
            export_onnx(saved, output, int8=precision == "int8")
            sizes[precision] = sum(os.path.getsize(os.path.join(output, f"{name}.onnx")) for name in GRAPHS)
            captioner = OnnxCaptioner(output, threads=args.threads or None)
            array = pixels.numpy()

            def onnx(captioner=captioner, array=array):
                for start in range(0, args.images, args.batch_size):
                    captioner.generate(array[start : start + args.batch_size], **fixed)

            sides[f"ONNX {precision}"] = onnx
        with torch.no_grad():
            expected = model.generate(pixel_values=pixels[:2], num_beams=1, **fixed).numpy()
        same = np.array_equal(
            OnnxCaptioner(os.path.join(folder, "fp32")).generate(pixels[:2].numpy(), **fixed), expected
        )
        seconds = common.time_interleaved(sides, warmup=1, steps=args.repeats)
    weights = sum(p.numel() for p in model.parameters()) * 4
    rows = [
        [name, f"{s:.2f}", f"{args.images / s:.2f}", f"{seconds['PyTorch generate'] / s:.2f}x"]
        for name, s in seconds.items()
    ]
    title = f"{args.images} images, {args.max_new_tokens} tokens each, batch {args.batch_size}, {args.repeats} runs"
    common.print_table(title, ["", "s", "images/s", "vs PyTorch"], rows)
    print(
        f"sizes: PyTorch weights {weights / 1e6:.0f} MB; ONNX fp32 {sizes['fp32'] / 1e6:.0f} MB, int8 "
        f"{sizes['int8'] / 1e6:.0f} MB (encoder, decoder and decoder with past; the decoder's weights twice)"
    )
    print(f"fp32 tokens equal to PyTorch's on 2 images: {same}")
    ratios = {name: seconds["PyTorch generate"] / s for name, s in seconds.items() if name != "PyTorch generate"}
    for name, ratio in ratios.items():
        common.report_ratio(f"images/s {name} / PyTorch", ratio)
    return {"ratios": ratios, "sizes": sizes, "fp32_equal": same}


if __name__ == "__main__":
    main()
