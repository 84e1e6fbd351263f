"""`vitgpt2 make-tiny-models`: small encoder/decoder folders in hub layout, loaded like hub checkpoints."""

import shutil


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "make-tiny-models",
        help="Write small random-weight ViT and GPT-2 folders (with a BPE tokenizer trained on the captions)",
    )
    parser.add_argument("--coco_dir", required=True, help="COCO-2017-layout folder whose train captions train the BPE")
    parser.add_argument("--output_dir", required=True, help="writes <output_dir>/encoder and <output_dir>/decoder")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--hidden_size", type=int, default=128)
    parser.add_argument("--num_layers", type=int, default=3)
    parser.add_argument("--vocab_size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--encoder_family",
        default="vit",
        help="vit (sin-cos positions, the demo's) or another family of vitgpt2.offline.tiny_encoders.FAMILIES "
        "(deit, beit, dinov2, swin, swinv2, clip, siglip, siglip2, ...), written as its hub checkpoints are",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    from vitgpt2.errors import ArgumentError
    from vitgpt2.offline.tiny_encoders import FAMILIES

    if args.encoder_family not in FAMILIES:
        raise ArgumentError(f"unknown --encoder_family {args.encoder_family!r}; known: {', '.join(FAMILIES)}")
    from vitgpt2.offline.synthetic import all_captions
    from vitgpt2.offline.tiny_models import write_tiny_models

    encoder, decoder = write_tiny_models(
        args.output_dir,
        all_captions(args.coco_dir, "train"),
        image_size=args.image_size,
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        vocab_size=args.vocab_size,
        seed=args.seed,
    )
    if args.encoder_family != "vit":
        from vitgpt2.offline.tiny_encoders import write_tiny_family_encoder

        shutil.rmtree(encoder)
        write_tiny_family_encoder(encoder, args.encoder_family, image_size=args.image_size, seed=args.seed)
    print(f"encoder: {encoder} ({args.encoder_family})\ndecoder: {decoder}")
    return 0
