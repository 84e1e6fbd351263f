"""Greedy captions/s of ViT-B/16 + distilgpt2 shapes: `generate` as it comes (dynamic KV cache, eager), with a static
KV cache, and with a static KV cache whose decoding step `generate` compiles (`torch.compile`, CUDA graphs on a GPU).

    python bench/bench_generate.py                                              # CPU, 8 images, eager ways only
    python bench/bench_generate.py --device cuda --batch_size 64 --dtype bf16 --compile   # as bench/gpu.sh runs it

Random weights; each caption is held to exactly `--new_tokens` tokens (`min_new_tokens` = `max_new_tokens`) so that
every way decodes the same number of steps. The model's weights are cast to `--dtype`, as `from_pretrained(...,
dtype=torch.bfloat16)` loads them for inference. Also printed: the share of captions equal to the default way's.
"""

import argparse

import common
import torch

from vitgpt2.inference import compiled_decoding

WEIGHT_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def generation_options(way: str, new_tokens: int) -> dict:
    options = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "num_beams": 1, "do_sample": False}
    if way == "default generate":
        return options
    if way == "static cache":
        return {**options, "cache_implementation": "static", "disable_compile": True}
    return {**options, **compiled_decoding()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_size", type=int, default=8, help="Images per generate call.")
    parser.add_argument("--new_tokens", type=int, default=20, help="Tokens per caption (COCO's are ~12-16).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed calls of each way.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed calls of each way (compilation happens here).")
    common.add_precision_arguments(parser, dtype_help="The weights' dtype.")
    common.add_model_arguments(parser)
    args = parser.parse_args(argv)
    common.start(args)

    model = common.build_captioner(tiny=args.tiny).to(args.device, WEIGHT_DTYPES[args.dtype]).eval()
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(args.batch_size, *common.image_shape(model), generator=generator)
    pixels = pixels.to(args.device, WEIGHT_DTYPES[args.dtype])
    ways = ["default generate", "static cache"] + (["static cache + compile"] if args.compile else [])

    def caption(way):
        with torch.no_grad():
            return model.generate(pixel_values=pixels, **generation_options(way, args.new_tokens))

    outputs = {}
    for way in ways:
        for _ in range(args.warmup):
            outputs[way] = caption(way)
    seconds = common.time_interleaved(
        {way: lambda way=way: caption(way) for way in ways}, 0, args.repeats, args.device
    )

    reference = outputs["default generate"]
    results = {}
    for way in ways:
        same = (outputs[way] == reference).all(dim=-1).float().mean().item()
        results[way] = {"s": seconds[way], "captions/s": args.batch_size / seconds[way], "same": same}
    rows = [[way, f"{r['s'] * 1e3:.1f}", f"{r['captions/s']:,.1f}", f"{r['same']:.0%}"] for way, r in results.items()]
    title = f"Greedy captions, batch {args.batch_size} x {args.new_tokens} tokens, {args.dtype} weights"
    common.print_table(title, ["", "ms per batch", "captions/s", "same as default"], rows)
    for way in ways[1:]:
        common.report_ratio(f"captions/s {way} / default generate", seconds["default generate"] / seconds[way])
    return results


if __name__ == "__main__":
    main()
