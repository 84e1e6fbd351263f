"""Scaling: preprocessing and training-view start-up at growing numbers of COCO-sized JPEGs (640x480, 5 captions).

    python bench/bench_scaling.py                                  # 2k, 8k and 32k images, num_proc 2
    python bench/bench_scaling.py --sizes 2000 8000 --work_dir /data/scaling

The JPEGs are written once, for the largest size; each smaller size is a folder with its own captions file that
lists the first N images and links to the same image folder. A given --work_dir keeps the JPEGs for later runs
(a larger run writes only the images it lacks); each size's cache goes to a fresh folder and is deleted once
measured (32k images hold ~5 GB).

For each size, in a fresh process each (spawned, so none starts with another's memory):
- preprocessing: `load_coco` + `preprocess` from the captions file to the finished uint8 cache (decode, resize,
  tokenize, write), as bench_preprocessing.py times it: images/s; the marginal images/s of the images a size adds
  to the one before (the fixed start-up cost cancels out); CPU ms per image of the process and its workers (other
  jobs on a shared machine move it less than wall time); cache size; the peak RSS of the process and of its
  largest `datasets.map` worker, and the peak PSS of the whole process tree (sampled every 0.5 s; PSS splits the
  pages a forked worker shares with its parent, which summed RSS would count twice);
- training-view start-up: reopen that cache as a second run of run_captioning.py does (`load_coco` + `preprocess`,
  which finds it by fingerprint), build `CaptionGroups` and fetch the first batch through a DataLoader with
  `CaptioningCollator`: seconds and peak RSS.
"""

import argparse
import contextlib
import multiprocessing
import os
import resource
import shutil
import tempfile

import bench_preprocessing
import common
import datasets
import psutil
import torch

from vitgpt2.data.coco_json import captions_file, read_captions_file, write_captions_file
from vitgpt2.data.collator import CaptioningCollator
from vitgpt2.data.views import CaptionGroups

SAMPLE_S = 0.5  # reading a process's PSS costs ~15 ms of CPU, taken from the 2 cores the bench measures


def grow_images(root: str, count: int, width: int, height: int) -> None:
    """At least `count` images in `root`: only those missing are written, and a run killed halfway is redone."""
    path = captions_file(root, "train2017")
    have = len(read_captions_file(path).images) if os.path.exists(path) else 0
    if have < count:
        common.write_coco_folder(root, count - have, width, height, seed=have, first_id=have + 1, progress=True)


def subset_folder(images_root: str, work_dir: str, size: int) -> str:
    """A COCO folder of the first `size` images of `images_root`: its own captions file, the images linked."""
    data = read_captions_file(captions_file(images_root, "train2017"))
    root = os.path.join(work_dir, f"{os.path.basename(images_root)}_first_{size}")
    os.makedirs(root, exist_ok=True)
    link = os.path.join(root, "train2017")
    if not os.path.islink(link):
        os.symlink(os.path.abspath(os.path.join(images_root, "train2017")), link)
    images = data.images[:size]
    ids = {image["id"] for image in images}
    annotations = [annotation for annotation in data.annotations if annotation["image_id"] in ids]
    write_captions_file(captions_file(root, "train2017"), images, annotations)
    return root


def peak_rss_mb() -> dict:
    """This process's peak RSS and that of its largest finished child (the `datasets.map` workers).
    Linux gives `ru_maxrss` in KiB."""
    to_mb = 1024 / 1e6
    return {
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * to_mb,
        "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * to_mb,
    }


def cpu_seconds() -> float:
    """CPU time of this process and its finished children: unlike wall time, barely moved by other jobs' load."""
    usages = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(usage.ru_utime + usage.ru_stime for usage in usages)


def tree_pss(pid: int) -> int:
    """Bytes of memory a process and its descendants use now (PSS: pages they share are counted once)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # a worker may end meanwhile
            total += process.memory_full_info().pss
    return total


def _send_result(sender, function, *args) -> None:
    sender.send(function(*args))
    sender.close()


def in_fresh_process(function, *args) -> dict:
    """`function(*args)` (a dict) in a spawned process, plus `tree_pss_mb`, its process tree's sampled peak."""
    context = multiprocessing.get_context("spawn")  # a fork would start with this process's pages
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_send_result, args=(sender, function, *args))
    process.start()
    sender.close()  # so that `recv` ends, rather than waits, if the child dies without a result
    peak = 0
    while process.is_alive():
        peak = max(peak, tree_pss(process.pid))
        if receiver.poll(SAMPLE_S):
            break
    try:
        result = receiver.recv()
    except EOFError:
        process.join()
        raise RuntimeError(
            f"{function.__name__} failed (exit code {process.exitcode}); see its traceback above"
        ) from None
    process.join()
    return {**result, "tree_pss_mb": peak / 1e6}


def start_child(args):
    datasets.disable_progress_bars()
    return bench_preprocessing.processor_and_tokenizer(args.encoder_size)


def preprocessing(coco_dir: str, work_dir: str, size: int, args) -> dict:
    image_processor, tokenizer = start_child(args)
    run, start = bench_preprocessing.run_vitgpt2, cpu_seconds()
    result = bench_preprocessing.measure(f"{size}_images", run, coco_dir, work_dir, image_processor, tokenizer, args)
    return {**result, "cpu_s": cpu_seconds() - start, **peak_rss_mb()}


def first_batch(dataset, image_processor, args) -> dict:
    view = CaptionGroups(dataset, args.captions_per_image)
    collator = CaptioningCollator(image_processor)
    # shuffled, as the Trainer's sampler is: the first batch reads rows from all over the cache
    loader = torch.utils.data.DataLoader(view, batch_size=args.train_batch_size, shuffle=True, collate_fn=collator)
    return next(iter(loader))


def training_view(coco_dir: str, cache_dir: str, args) -> dict:
    image_processor, tokenizer = start_child(args)
    written = {os.path.join(folder, name) for folder, _, names in os.walk(cache_dir) for name in names}
    run = bench_preprocessing.run_vitgpt2
    dataset, open_s = common.timed(
        run, coco_dir, cache_dir, image_processor, tokenizer, args, load_from_cache_file=True
    )
    if not {entry["filename"] for entry in dataset.cache_files} <= written:
        raise RuntimeError(f"{coco_dir}: preprocessing ran again instead of reading the cache in {cache_dir}")
    batch, view_s = common.timed(first_batch, dataset, image_processor, args)
    return {"rows": len(dataset), "open_s": open_s, "view_s": view_s, "batch": len(batch["labels"]), **peak_rss_mb()}


def measure_size(size: int, images_root: str, work_dir: str, args) -> dict:
    coco_dir = subset_folder(images_root, work_dir, size)
    print(f"{size:,} images: preprocessing...", flush=True)
    prep = in_fresh_process(preprocessing, coco_dir, work_dir, size, args)
    print(f"{size:,} images: {prep['seconds']:.1f} s; opening the cache for training...", flush=True)
    try:
        view = in_fresh_process(training_view, coco_dir, prep["cache_dir"], args)
    finally:
        shutil.rmtree(prep["cache_dir"])
    if prep["rows"] != size or view["rows"] != size:
        raise RuntimeError(f"{size} images gave {prep['rows']} preprocessed rows and a view of {view['rows']}")
    return {"images": size, "preprocessing": prep, "view": view}


def marginal_rate(small: dict, large: dict) -> float:
    """Images/s of the images one size adds to another: the fixed start-up cost (processes, the dataset builder)
    cancels out."""
    seconds = large["preprocessing"]["seconds"] - small["preprocessing"]["seconds"]
    return (large["images"] - small["images"]) / seconds if seconds > 0 else float("nan")


def table_row(result: dict, previous: dict | None) -> list[str]:
    prep, view, size = result["preprocessing"], result["view"], result["images"]
    return [
        f"{size:,}",
        f"{prep['seconds']:.1f}",
        f"{size / prep['seconds']:.0f}",
        f"{marginal_rate(previous, result):.0f}" if previous else "-",
        f"{prep['cpu_s'] / size * 1e3:.2f}",
        f"{prep['rss_mb']:,.0f}",
        f"{prep['worker_rss_mb']:,.0f}" if prep["worker_rss_mb"] else "-",
        f"{prep['tree_pss_mb']:,.0f}",
        f"{prep['bytes'] / 1e6:,.0f}",
        f"{prep['bytes'] / size / 1e3:.1f}",
        f"{view['open_s']:.2f} + {view['view_s']:.2f}",
        f"{view['rss_mb']:,.0f}",
    ]


def compared(result: dict) -> dict:
    """The measures whose ratio between sizes the bench reports."""
    prep, view, size = result["preprocessing"], result["view"], result["images"]
    return {
        "images_per_s": size / prep["seconds"],
        "cpu_s_per_image": prep["cpu_s"] / size,
        "cache_bytes_per_image": prep["bytes"] / size,
        "peak_rss": prep["rss_mb"],
        "tree_pss": prep["tree_pss_mb"],
        "view_start_s": view["open_s"] + view["view_s"],
        "view_rss": view["rss_mb"],
    }


def report(results: list[dict]) -> dict:
    """Prints and returns each measure at the largest size over the smallest."""
    small, large = results[0], results[-1]
    bounded = f"bounded: well below the {large['images'] / small['images']:g}x images"
    expected = {
        "images_per_s": ("preprocessing images/s", "expect ~1"),
        "cpu_s_per_image": ("preprocessing CPU seconds per image", "expect ~1"),
        "cache_bytes_per_image": ("cache bytes per image", "expect ~1"),
        "peak_rss": ("preprocessing peak RSS", bounded),
        "tree_pss": ("preprocessing peak tree PSS", bounded),
        "view_start_s": ("training-view start-up seconds", "reads every image's caption ids and file status"),
        "view_rss": ("training-view peak RSS", bounded),
    }
    before, after = compared(small), compared(large)
    ratios = {key: after[key] / before[key] for key in expected}
    for key, (what, expectation) in expected.items():
        common.report_ratio(f"{what}, {large['images']:,} / {small['images']:,} images ({expectation})", ratios[key])
    marginal = marginal_rate(small, large)
    fixed = small["preprocessing"]["seconds"] - small["images"] / marginal
    print(f"preprocessing images/s from {small['images']:,} to {large['images']:,} images: {marginal:.0f}", end="")
    print(f" (the rest of the {small['images']:,} images' time, {fixed:.1f} s, is a fixed start-up cost)")
    return ratios


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 32000], help="Numbers of images.")
    parser.add_argument("--work_dir", default=None, help="Where JPEGs (kept) and caches go (default: a temp folder).")
    parser.add_argument("--num_proc", type=int, default=2, help="datasets.map processes.")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--encoder_size", type=int, default=224, help="The image processor's size (ViT-B/16: 224).")
    parser.add_argument("--max_target_length", type=int, default=64)
    parser.add_argument("--captions_per_image", type=int, default=5, help="CaptionGroups' captions per item.")
    parser.add_argument("--train_batch_size", type=int, default=32, help="Items in the first training batch.")
    args = parser.parse_args(argv)
    sizes = sorted(set(args.sizes))
    print(common.machine_line())

    with contextlib.ExitStack() as stack:
        work_dir = args.work_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_scaling_"))
        images_root = os.path.join(work_dir, f"coco_{args.width}x{args.height}")
        grow_images(images_root, sizes[-1], args.width, args.height)
        results = [measure_size(size, images_root, work_dir, args) for size in sizes]

    header = [
        "images", "preprocess s", "images/s", "marginal images/s", "CPU ms/image", "peak RSS MB", "worker RSS MB",
        "tree PSS MB", "cache MB", "cache KB/image", "view s (open + batch)", "view RSS MB",
    ]  # fmt: skip
    title = f"Scaling: preprocessing (num_proc {args.num_proc}) and training-view start-up, one process each"
    common.print_table(title, header, [table_row(result, before) for before, result in zip([None, *results], results)])
    ratios = report(results)
    print(common.machine_line())  # the load again: other jobs' share of the 2 cores moves the wall times
    return {"sizes": sizes, "results": results, "ratios": ratios}


if __name__ == "__main__":
    main()
