"""Captioning a folder: `vitgpt2 caption` against a loop of `pipeline(...)` calls, on the same COCO-sized JPEGs.

    python bench/bench_caption.py                       # ViT-B/16 224 + distilgpt2 shapes, 64 photos, batch 32
    python bench/bench_caption.py --tiny --images 8     # CI smoke run
    python bench/bench_caption.py --dtype bfloat16      # every side's weights in bf16
    python bench/bench_caption.py --onnx                # plus `vitgpt2 caption --backend onnx`, fp32 and int8

Random weights with the real shapes (the decoder's vocabulary is the BPE's, 512 ids, so that captions decode). Every
side decodes exactly --max_new_tokens tokens per image, greedy. Sides:
- a loop of `pipe(path)` calls, one image each: what a script around the pipeline does;
- `pipe(paths, batch_size=32)`: the pipeline's own batching, images decoded in the main process;
- `vitgpt2 caption`'s path (`caption_images`): images decoded in --num_workers DataLoader processes while batches
  of 32 generate.
- with --onnx, the same path through onnxruntime (`--backend onnx`), exported by `vitgpt2 export-onnx` in fp32 and
  with int8 weights, on as many onnxruntime threads.
All with the same threads and, but for int8, weights' dtype. Target: `vitgpt2 caption` at least 3x the loop's
images/s; each of its sides is held to it.
"""

import argparse
import os
import tempfile

import common
import torch
from transformers import GPT2Config, GPT2LMHeadModel, ViTConfig, ViTImageProcessor, ViTModel

from vitgpt2.commands.caption import caption_images
from vitgpt2.export.onnx import OnnxCaptioner, export_onnx
from vitgpt2.inference import captioning_pipeline
from vitgpt2.model import configure_special_tokens, load_captioner
from vitgpt2.offline.tiny_models import train_byte_level_bpe

TARGET = 3.0


def save_captioner(folder: str, tiny: bool) -> str:
    tokenizer = train_byte_level_bpe(
        [common.synthetic_caption(__import__("numpy").random.default_rng(i)) for i in range(200)]
    )
    vit, gpt2 = common.model_configs(tiny)
    gpt2 = GPT2Config(**{**gpt2.to_dict(), "vocab_size": len(tokenizer), "bos_token_id": 0, "eos_token_id": 0})
    ViTModel(ViTConfig(**vit.to_dict()), add_pooling_layer=False).save_pretrained(os.path.join(folder, "encoder"))
    GPT2LMHeadModel(gpt2).save_pretrained(os.path.join(folder, "decoder"))
    model = load_captioner(os.path.join(folder, "encoder"), os.path.join(folder, "decoder"))
    configure_special_tokens(model, tokenizer)
    output = os.path.join(folder, "captioner")
    for component in (model, tokenizer, ViTImageProcessor(size={"height": vit.image_size, "width": vit.image_size})):
        component.save_pretrained(output)
    return output


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--max_new_tokens", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1, help="Timed runs of each side, taking turns.")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="Every side's weights.")
    parser.add_argument("--onnx", action="store_true", help="Also time --backend onnx, exported in fp32 and int8.")
    common.add_model_arguments(parser)
    args = parser.parse_args(argv)
    if args.onnx and args.dtype != "float32":
        parser.error("--onnx exports the float32 captioner; leave --dtype out")
    common.start(args)
    fixed = {"max_new_tokens": args.max_new_tokens, "min_new_tokens": args.max_new_tokens, "num_beams": 1}
    with tempfile.TemporaryDirectory(prefix="bench_caption_") as folder:
        common.write_coco_folder(folder, args.images, captions_per_image=1)
        images_dir = os.path.join(folder, "train2017")
        paths = sorted(os.path.join(images_dir, name) for name in os.listdir(images_dir))
        saved = save_captioner(folder, args.tiny)
        pipe = captioning_pipeline(saved, device="cpu", dtype=args.dtype)
        outputs = {}

        def loop():
            outputs["loop"] = [pipe(path, **fixed)[0]["generated_text"] for path in paths]

        def batched():
            outputs["batched"] = [out[0]["generated_text"] for out in pipe(paths, batch_size=args.batch_size, **fixed)]

        def command(name="vitgpt2 caption", captioner=pipe):
            batches = caption_images(captioner, paths, args.batch_size, args.num_workers, **fixed)
            outputs[name] = [caption for _, caption, _ in batches]

        sides = {"loop of pipe(path)": loop, f"pipe(paths, batch_size={args.batch_size})": batched,
                 "vitgpt2 caption": command}  # fmt: skip
        onnx_sides = [f"vitgpt2 caption --backend onnx ({precision})" for precision in ("fp32", "int8")]
        for name, precision in zip(onnx_sides, ("fp32", "int8")) if args.onnx else ():
            exported = os.path.join(folder, f"onnx-{precision}")
            export_onnx(saved, exported, int8=precision == "int8")
            captioner = OnnxCaptioner(exported, threads=args.threads or None)
            sides[name] = lambda name=name, captioner=captioner: command(name, captioner)
        seconds = common.time_interleaved(sides, warmup=0, steps=args.repeats)
        # The encoder's share: its forward alone on one batch, the work per image that batching cannot shorten.
        pixels = torch.randn(args.batch_size, *common.image_shape(pipe.model), dtype=pipe.model.dtype)
        with torch.no_grad():
            _, encoder_seconds = common.timed(pipe.model.encoder, pixel_values=pixels)
    same = outputs["loop"] == outputs["batched"] == outputs["vitgpt2 caption"]
    # in bf16, a batch's rounding differs from one image's: captions can depend on the batching
    agree = {name: sum(a == b for a, b in zip(outputs["loop"], captions)) for name, captions in outputs.items()}
    baseline = seconds["loop of pipe(path)"]
    rows = [[name, f"{s:.2f}", f"{args.images / s:.2f}", f"{baseline / s:.2f}x"] for name, s in seconds.items()]
    title = (
        f"{args.images} COCO-sized JPEGs, {args.max_new_tokens} tokens each, {args.num_workers} decoding workers, "
        f"{args.dtype} weights"
    )
    common.print_table(title, ["", "s", "images/s", "vs loop"], rows)
    print(f"the same captions on every side: {same}", end="")
    print("" if same else f" (equal to the loop's: pipeline batches {agree['batched']}, vitgpt2 caption "
          f"{agree['vitgpt2 caption']} of {args.images})")  # fmt: skip
    onnx_agree = {name: agree[name] for name in onnx_sides if name in agree}
    for name, count in onnx_agree.items():
        print(f"{name}: {count} of {args.images} captions equal to the loop's")
    per_image = 1000 * seconds["vitgpt2 caption"] / args.images
    print(f"the encoder alone: {1000 * encoder_seconds / args.batch_size:.0f} ms an image, of vitgpt2 caption's "
          f"{per_image:.0f} ms")  # fmt: skip
    ratios = {name: baseline / s for name, s in seconds.items() if name != "loop of pipe(path)"}
    common.report_ratio(f"images/s vitgpt2 caption / pipe(paths, batch_size={args.batch_size})",
                        seconds[f"pipe(paths, batch_size={args.batch_size})"] / seconds["vitgpt2 caption"])  # fmt: skip
    holds = {
        name: common.report_ratio(f"images/s {name} / loop of pipe(path)", ratio, TARGET)
        for name, ratio in ratios.items()
        if name.startswith("vitgpt2 caption")
    }
    return {"ratios": ratios, "same_captions": same, "target_holds": holds, "onnx_agree": onnx_agree}


if __name__ == "__main__":
    main()
