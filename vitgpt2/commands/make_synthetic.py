"""`vitgpt2 make-synthetic`: a synthetic captioning set in the COCO 2017 layout."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "make-synthetic", help="Write a synthetic COCO-2017-layout captioning set (images + annotations)"
    )
    parser.add_argument("--output_dir", required=True, help="folder to write train2017/, val2017/, annotations/")
    parser.add_argument("--num_train", type=int, default=2000, help="training images (5 captions each)")
    parser.add_argument("--num_val", type=int, default=200, help="validation images (5 captions each)")
    parser.add_argument("--image_size", type=int, default=96, help="side of the square JPEGs in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--kind",
        choices=("shapes", "scenes"),
        default="shapes",
        help="shapes: coloured shapes along an edge (learned almost perfectly); scenes: objects with sizes and colours "
        "in places and relations, with references worded as differently as people word them (room for --scst)",
    )
    parser.set_defaults(func=run)


def run(args) -> int:
    from vitgpt2.offline.synthetic import write_synthetic_coco

    write_synthetic_coco(args.output_dir, args.num_train, args.num_val, args.image_size, args.seed, args.kind)
    print(f"wrote {args.kind}: {args.num_train} training and {args.num_val} validation images to {args.output_dir}")
    return 0
