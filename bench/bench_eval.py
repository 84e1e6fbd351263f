"""Evaluation: generating once per image vs once per caption row (the usual per-row eval), greedy, fixed length.

    python bench/bench_eval.py                             # ViT-B/16 224 + distilgpt2 shapes, 8 images, CPU
    python bench/bench_eval.py --device cuda --num_images 512 --batch_size 64

A validation set stored one row per caption makes `predict_with_generate` caption every image K times (K=5 on
COCO), and greedy decoding gives the same caption each time. vitgpt2 generates once per image and scores it
against all K references. Both sides run in batches of the same size and decode exactly `--max_length` tokens
(EOS is held back until then), so the work per caption is the same and only the number of captions differs.
"""

import argparse

import common
import torch


def generate_all(model, pixels: torch.Tensor, batch_size: int, max_length: int) -> torch.Tensor:
    batches = [
        model.generate(
            pixel_values=pixels[start : start + batch_size],
            max_length=max_length,
            min_length=max_length,  # fixed-length captions: both sides decode the same tokens per caption
            num_beams=1,
            do_sample=False,
        )
        for start in range(0, len(pixels), batch_size)
    ]
    return torch.cat(batches)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_images", type=int, default=8)
    parser.add_argument("--captions_per_image", type=int, default=5, help="References per image (COCO: 5).")
    parser.add_argument("--batch_size", type=int, default=8, help="Eval batch size, the same for both sides.")
    parser.add_argument("--max_length", type=int, default=20, help="Decoder length, start token included.")
    parser.add_argument("--repeats", type=int, default=2, help="Timed runs of each side, taking turns.")
    common.add_model_arguments(parser)
    args = parser.parse_args(argv)
    common.start(args)

    model = common.build_captioner(tiny=args.tiny).to(args.device).eval()
    pixels = torch.randn(args.num_images, *common.image_shape(model), device=args.device)
    rows = pixels.repeat_interleave(args.captions_per_image, dim=0)  # one row per (image, reference)
    outputs = {}

    def run(name: str, inputs: torch.Tensor):
        def step():
            with torch.no_grad():
                outputs[name] = generate_all(model, inputs, args.batch_size, args.max_length)

        return step

    with torch.no_grad():
        generate_all(model, pixels[:1], 1, args.max_length)  # warm-up: first-call allocations and kernel choice
    seconds = common.time_interleaved(
        {"once per image": run("once per image", pixels), "once per row": run("once per row", rows)},
        warmup=0,
        steps=args.repeats,
        device=args.device,
    )
    same = torch.equal(
        outputs["once per row"], outputs["once per image"].repeat_interleave(args.captions_per_image, 0)
    )
    table = [
        [name, f"{len(outputs[name])}", f"{s:.2f}", f"{len(outputs[name]) / s:.2f}", f"{args.num_images / s:.2f}"]
        for name, s in seconds.items()
    ]
    title = f"Greedy generation, {args.num_images} images, max_length {args.max_length}, batch size {args.batch_size}"
    common.print_table(title, ["", "captions generated", "seconds", "captions/s", "images evaluated/s"], table)
    print(f"per-row captions equal the per-image captions repeated: {same}")
    print(f"captions needed: per row {len(rows)} vs per image {len(pixels)} ({len(rows) / len(pixels):.1f}x)")
    ratio = seconds["once per row"] / seconds["once per image"]
    common.report_ratio("eval wall-clock once per row / once per image", ratio)
    return {"ratio": ratio, "seconds": seconds, "identical_captions": same}


if __name__ == "__main__":
    main()
