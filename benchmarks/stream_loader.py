"""How fast lib.data's streamed loader decodes real JPEG files, with 0, 1 and 2 worker processes.

    python benchmarks/stream_loader.py [--archive ../shared/data/cifar10-jpeg.tar.gz | --data-root DIR]
        [--out chapters/results/streaming/stream_loader.json] [--batches 30] [--batch-size 64]

ImageNet is too large for memory, so `lib.data` streams it: DataLoader worker processes open each
JPEG, decode it, resize its shorter side and crop the centre (lib.data.read_image), and the batch
is then augmented and normalised on the training device. This measures that path on the real
CIFAR-10 JPEG files, read through the folder reader with in_memory=False at 224x224 (ImageNet's
training size), in two forms:

- `cifar10_224`: the archive's own 32x32 JPEGs, upscaled to 224 by the reader;
- `photo_500x375`: the same images first saved as 500x375 JPEG files (quality 90), a typical
  photograph's size, so that decoding costs what it costs for full-size photographs.

For each form and each number of workers (0 = in the main process) it times `--batches` batches
after one warm-up batch and reports images per second of wall time and images per CPU-second (all
processes: the main one and its workers). On a machine shared with other jobs the wall-time rate
depends on the load; the CPU-second rate barely does, and says how many cores a target rate needs.
Decoding alone is timed too, one image at a time in one thread: PIL (what lib.data uses) against
torchvision.io.decode_jpeg on the CPU. The archive is extracted to a temporary folder.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from lib import data, files, results  # noqa: E402

DEFAULT_ARCHIVE = HERE.parent.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
DEFAULT_OUT = HERE.parent / "chapters" / "results" / "streaming" / "stream_loader.json"
SIZE = 224
VAL_FRACTION = 0.1  # of each training class held out by the reader (the photo form is sized for it)


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (DataLoader workers), user + system."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def time_loader(dataset: data.Dataset, workers: int, batches: int, batch_size: int) -> dict:
    """Images per second (wall, CPU) of `batches` training batches after one warm-up batch."""
    loader = data.StreamLoader(dataset.train, batch_size, "cpu", dataset.mean, dataset.std, shuffle=True,
                               augment=True, drop_last=True, seed=0, num_workers=workers)
    if len(loader) < batches + 1:
        raise SystemExit(f"error: {len(dataset.train)} training images make {len(loader)} batches of {batch_size}, "
                         f"fewer than the {batches} timed after a warm-up one: lower --batches or --batch-size")
    loader.set_epoch(0)
    iterator = iter(loader)
    next(iterator)  # starts the workers and fills their queues
    load_before = os.getloadavg()[0]
    cpu, wall = cpu_seconds(), time.perf_counter()
    seen = 0
    for _ in range(batches):
        x, _ = next(iterator)
        seen += len(x)
    wall = time.perf_counter() - wall
    del iterator  # shuts the workers down, so that their CPU time is counted
    cpu = cpu_seconds() - cpu
    return {"workers": workers, "images": seen, "seconds": wall, "images_per_second": seen / wall,
            "cpu_seconds": cpu, "images_per_cpu_second": seen / cpu, "load_average": [load_before, os.getloadavg()[0]]}


def time_decoders(paths: list[str], n: int) -> dict:
    """Seconds per image to decode (only) n JPEG files in one thread: PIL and torchvision.io."""
    from PIL import Image
    from torchvision.io import ImageReadMode, decode_jpeg

    blobs = [Path(p).read_bytes() for p in paths[:n]]
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    try:
        import io

        start = time.process_time()
        for blob in blobs:
            with Image.open(io.BytesIO(blob)) as image:
                image.convert("RGB").load()
        out["pil_ms_per_image"] = 1000 * (time.process_time() - start) / n
        tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        start = time.process_time()
        for t in tensors:
            decode_jpeg(t, mode=ImageReadMode.RGB)
        out["torchvision_ms_per_image"] = 1000 * (time.process_time() - start) / n
        start = time.process_time()
        for p in paths[:n]:
            data.read_image(p, SIZE)
        out["read_image_224_ms_per_image"] = 1000 * (time.process_time() - start) / n
    finally:
        torch.set_num_threads(torch_threads)
    out["mean_file_bytes"] = sum(len(b) for b in blobs) / n
    return out


def make_photo_sized(root: Path, target: Path, per_class: int) -> Path:
    """Save `per_class` training and 20 test images per class as 500x375 JPEGs (quality 90)."""
    from PIL import Image

    for split, count in (("train", per_class), ("test", 20)):
        for class_dir in sorted((root / split).iterdir()):
            out = target / split / class_dir.name
            out.mkdir(parents=True, exist_ok=True)
            for path in sorted(class_dir.iterdir())[:count]:
                with Image.open(path) as image:
                    image.convert("RGB").resize((500, 375), Image.BICUBIC).save(out / path.name, quality=90)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=None)
    parser.add_argument("--data-root", type=Path, default=None, help="an extracted CIFAR-10 (instead of --archive)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", default="0,1,2")
    args = parser.parse_args(argv)
    archive = args.archive or (None if args.data_root else DEFAULT_ARCHIVE)
    if archive is not None and not archive.is_file():
        parser.error(f"{archive} not found: pass the CIFAR-10 JPEG archive (--archive) or a folder (--data-root)")
    if args.data_root is not None and not (args.data_root / "train").is_dir():
        parser.error(f"--data-root {args.data_root} has no train/ folder")
    workers = [int(w) for w in args.workers.split(",")]

    record = {"format": "imagenet-course-stream-loader/1", "image_size": SIZE, "batch_size": args.batch_size,
              "batches": args.batches, "machine": {**results.provenance("cpu"), "cpu_count": os.cpu_count()},
              "command": "python benchmarks/stream_loader.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "forms": {}}
    with tempfile.TemporaryDirectory(prefix="stream_") as work:
        root = args.data_root
        if archive is not None:
            with tarfile.open(archive) as tar:
                tar.extractall(work, filter="data")
            root = Path(work)
        # enough photo-sized training images for the warm-up batch and `batches` more, after the
        # reader holds VAL_FRACTION of every class out for validation
        per_class = math.ceil((args.batches + 1) * args.batch_size / (1 - VAL_FRACTION) / 10) + 1
        photo = make_photo_sized(root, Path(work) / "photo", per_class=per_class)
        for form, folder in (("cifar10_224", root), ("photo_500x375", photo)):
            dataset = data.load("cifar10", folder, image_size=SIZE, in_memory=False, val_fraction=VAL_FRACTION)
            print(f"{form}: {dataset}", flush=True)
            entry = {"train_images": len(dataset.train), "decoders": time_decoders(dataset.train.paths, 200),
                     "loader": []}
            for w in workers:
                row = time_loader(dataset, w, args.batches, args.batch_size)
                print(f"  {w} worker(s): {row['images_per_second']:,.0f} images/s, "
                      f"{row['images_per_cpu_second']:,.0f} images per CPU-second", flush=True)
                entry["loader"].append(row)
            print(f"  decoding alone: {entry['decoders']}", flush=True)
            record["forms"][form] = entry
    files.write_json(args.out, record)
    print(f"record written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
