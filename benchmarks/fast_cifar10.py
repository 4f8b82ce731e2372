"""The fast CIFAR-10 recipe (lib.fast) on the real CIFAR-10, on this machine; and its ablation.

    python benchmarks/fast_cifar10.py [--archive ../shared/data/cifar10-jpeg.tar.gz | --data-root DIR]
        [--out chapters/results/cifar10/fast/cifar10_fast_recipe.json] [--threads N]
        [--parts full,ablation,precision,airbench] [--ablation-widths 32,64,64] [--ablation-seeds 0,1]

1. full: lib.fast's recipe as published (airbench94's settings, 9.9 epochs) trained on all 50,000
   training images (train + val of lib.data's split, as airbench does), scored on the 10,000 test
   images with its test-time augmentation; goal 93% or more.
2. ablation: the recipe on a narrower network (`--ablation-widths`, about a tenth of the work) with
   each ingredient of lib.fast.INGREDIENTS removed in turn, for each seed; the full small recipe with
   the same seeds is the reference.
3. precision: the narrow recipe of the ablation once in float32 (first ablation seed), to set beside
   its bfloat16 row: what 16-bit arithmetic costs in accuracy there.
4. airbench: the `airbench` package's airbench94 on the same images, side by side, where it can run
   (a CUDA GPU); otherwise the reason is recorded.

The record is written after every run (atomically), and runs already in it with the same settings
are skipped, so an interrupted benchmark continues where it stopped. The archive is extracted to a
temporary folder that is removed afterwards; nothing derived from it enters the repository except
the numbers in the record. Results are described in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shlex
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import airbench_compare  # noqa: E402

from lib import data, fast, files, results  # noqa: E402

FORMAT = "imagenet-course-fast-recipe/1"
DEFAULT_ARCHIVE = HERE.parent.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
DEFAULT_OUT = HERE.parent / "chapters" / "results" / "cifar10" / "fast" / "cifar10_fast_recipe.json"


def forward_flops(recipe: dict) -> int:
    """Multiply-adds x 2 of one forward pass of one 32x32 RGB image through the recipe's network."""
    from torch.utils.flop_counter import FlopCounterMode

    net = fast.fast_net(10, 3, recipe).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(torch.zeros(1, 3, 32, 32))
    return int(counter.get_total_flops())


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_record(path: Path) -> dict:
    if path.is_file():
        record = json.loads(path.read_text())
        if record.get("format") != FORMAT:
            raise SystemExit(f"error: {path} is not a fast-recipe record; choose another --out")
        return record
    return {"format": FORMAT}


def save(path: Path, record: dict, keys) -> None:
    """Write `record`'s `keys` (and the shared keys) into the file, keeping what other runs of this
    script (other --parts, perhaps running at the same time) wrote there."""
    merged = load_record(path)
    merged.update({k: record[k] for k in ("format", "dataset", "archive_sha256", *keys) if k in record})
    files.write_json(path, merged)


def machine() -> dict:
    info = results.provenance("cpu" if not torch.cuda.is_available() else "cuda")
    info["cpu_count"] = os.cpu_count()
    info["nice"] = os.nice(0)
    info["cpu_bfloat16_features"] = cpu_bfloat16_features()
    return info


def cpu_bfloat16_features() -> list[str] | None:
    """The CPU's bfloat16 instruction sets (Intel AMX and AVX-512 BF16) as Linux reports them; None
    where /proc/cpuinfo cannot be read (another system)."""
    try:
        with open("/proc/cpuinfo") as handle:
            flags = next((line.split(":", 1)[1].split() for line in handle if line.startswith("flags")), [])
    except OSError:
        return None
    return sorted({"amx_bf16", "avx512_bf16"} & set(flags))


def run_row(result: fast.FastResult, seed: int, load_before: float) -> dict:
    return {"seed": seed, "amp": result.amp, "test_accuracy": result.test_accuracy, "test_accuracy_plain": result.test_accuracy_plain,
            "seconds": result.seconds, "train_seconds": result.train_seconds,
            "images_per_second": result.images_per_second, "steps": result.steps, "train_size": result.train_size,
            "load_average": [load_before, os.getloadavg()[0]], "device": result.device}


def subset_of(cifar: data.Dataset, size: int) -> data.Dataset:
    """All training images (train + val) or a class-balanced subset of `size` of them (fixed by seed 0),
    as the train split of a dataset with the same test split and statistics."""
    images = torch.cat([cifar.train.images, cifar.val.images])
    labels = torch.cat([cifar.train.labels, cifar.val.labels])
    if 0 < size < len(labels):
        _, keep = data.stratified_split(labels, size / len(labels), seed=0)
        images, labels = images[keep], labels[keep]
    empty = data.TensorSplit(images[:0], labels[:0])
    return dataclasses.replace(cifar, train=data.TensorSplit(images, labels), val=empty)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archive", type=Path, default=None, help="CIFAR-10 as JPEG folders in a .tar.gz")
    parser.add_argument("--data-root", type=Path, default=None, help="an extracted CIFAR-10 (instead of --archive)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--parts", default="full,ablation,precision,airbench")
    parser.add_argument("--seed", type=int, default=0, help="seed of the full run")
    parser.add_argument("--ablation-widths", default="32,64,64")
    parser.add_argument("--ablation-seeds", default="0,1")
    parser.add_argument("--ablation-train-size", type=int, default=10_000,
                        help="training images of the ablation runs (a stratified subset; 0: all)")
    parser.add_argument("--ablation-batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", action="store_true",
                        help="mixed precision (bfloat16 convolutions) on the CPU too; always on with CUDA")
    parser.add_argument("--epochs", type=float, default=None, help="override the recipe's epochs (quick checks only)")
    args = parser.parse_args(argv)

    parts = [p for p in args.parts.split(",") if p]
    bad = sorted(set(parts) - {"full", "ablation", "precision", "airbench"})
    if bad:
        parser.error(f"unknown part(s) {bad}; choose from full, ablation, precision, airbench")
    if args.archive is not None and args.data_root is not None:
        parser.error("give --archive or --data-root, not both")
    archive = args.archive or (None if args.data_root else DEFAULT_ARCHIVE)
    if archive is not None and not archive.is_file():
        parser.error(f"{archive} not found: pass the CIFAR-10 JPEG archive (--archive) or a folder (--data-root)")
    if args.data_root is not None and not args.data_root.is_dir():
        parser.error(f"--data-root {args.data_root} is not a folder")
    widths = tuple(int(w) for w in args.ablation_widths.split(","))
    seeds = tuple(int(s) for s in args.ablation_seeds.split(","))
    overrides = {} if args.epochs is None else {"epochs": args.epochs}
    small = {"widths": widths, "batch_size": args.ablation_batch_size, **overrides}
    fast.make_recipe(small)  # fails now, not after an hour, if the settings cannot work
    if args.threads:
        torch.set_num_threads(args.threads)
    amp = True if args.amp else None  # None: lib.fast's default (on with CUDA only)

    record = load_record(args.out)
    command = "python benchmarks/fast_cifar10.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="cifar10_") as work:
        root = args.data_root
        if archive is not None:
            print(f"extracting {archive} to {work}", flush=True)
            with tarfile.open(archive) as tar:
                tar.extractall(work, filter="data")
            root = Path(work)
            record["archive_sha256"] = sha256(archive)
        cifar = data.load("cifar10", root)
        print(cifar, flush=True)
        record["dataset"] = {"name": "cifar10", "source": "JPEG image folders" if (root / "train").is_dir()
                             else "torchvision's cifar-10-batches-py", "train_size": len(cifar.train) + len(cifar.val),
                             "test_size": len(cifar.test)}
        splits = ("train", "val")

        if "full" in parts:
            recipe = fast.make_recipe(**overrides)
            done = record.get("full")
            if (done and done.get("recipe") == json.loads(json.dumps(recipe)) and done.get("seed") == args.seed
                    and done.get("amp") == bool(amp or torch.cuda.is_available())):
                print("full run already recorded; skipping", flush=True)
            else:
                print("== full recipe", flush=True)
                load = os.getloadavg()[0]
                result = fast.train(cifar, recipe, seed=args.seed, device=args.device, splits=splits, amp=amp)
                record["full"] = {**run_row(result, args.seed, load), "recipe": recipe, "history": result.history,
                                  "report": result.report, "forward_flops": forward_flops(recipe),
                                  "command": command, "machine": machine()}
                save(args.out, record, ["full"])

        if "ablation" in parts or "precision" in parts:  # both train the narrow recipe on one subset
            small_recipe = fast.make_recipe(small)
            subset = subset_of(cifar, args.ablation_train_size)

        if "ablation" in parts:
            recipe = small_recipe
            section = record.get("ablation")
            settings = {"recipe": json.loads(json.dumps(recipe)), "amp": bool(amp or torch.cuda.is_available()),
                        "train_size": len(subset.train)}
            if not section or any(section.get(k) != v for k, v in settings.items()):
                section = {**settings, "forward_flops": forward_flops(recipe), "rows": [], "command": command,
                           "machine": machine(),
                           "ingredients": {name: text for name, (_, text) in fast.INGREDIENTS.items()}}
            record["ablation"] = section
            for seed in seeds:  # every ingredient for one seed before the next seed
                for removed in ["none", *fast.INGREDIENTS]:
                    if any(r["removed"] == removed and r["seed"] == seed for r in section["rows"]):
                        continue
                    print(f"== ablation: without {removed}, seed {seed}", flush=True)
                    changes = {} if removed == "none" else fast.INGREDIENTS[removed][0]
                    load = os.getloadavg()[0]
                    result = fast.train(subset, {**recipe, **changes}, seed=seed, device=args.device,
                                        splits=("train",), amp=amp)
                    section["rows"].append({"removed": removed, **run_row(result, seed, load)})
                    save(args.out, record, ["ablation"])

        if "precision" in parts:
            # The narrow recipe of the ablation once more, in float32, with the first ablation seed:
            # set beside that seed's whole-recipe row (bfloat16 with --amp), it shows what 16-bit
            # arithmetic costs in accuracy on this setting.
            recipe = small_recipe
            settings = {"recipe": json.loads(json.dumps(recipe)), "train_size": len(subset.train),
                        "seed": seeds[0]}
            done = record.get("precision")
            if done and all(done.get(k) == v for k, v in settings.items()):
                print("float32 run already recorded; skipping", flush=True)
            else:
                print(f"== precision: the narrow recipe in float32, seed {seeds[0]}", flush=True)
                load = os.getloadavg()[0]
                result = fast.train(subset, recipe, seed=seeds[0], device=args.device, splits=("train",),
                                    amp=False)
                record["precision"] = {**settings, "float32": run_row(result, seeds[0], load), "command": command,
                                       "machine": machine()}
                save(args.out, record, ["precision"])

        if "airbench" in parts:
            reason = airbench_compare.cannot_run()
            if reason is not None:
                print(f"airbench not run: {reason}", flush=True)
                record["airbench"] = {"ran": False, "reason": reason, "command": command}
            else:
                rows = airbench_compare.run_airbench94(cifar, Path(work), seeds=(args.seed,))
                record["airbench"] = {"ran": True, "rows": rows, "version": _airbench_version(), "command": command,
                                      "machine": machine()}
            save(args.out, record, ["airbench"])
    save(args.out, record, [])
    print(f"record written to {args.out}", flush=True)
    return 0


def _airbench_version() -> str:
    from importlib.metadata import version

    return version("airbench")


if __name__ == "__main__":
    sys.exit(main())
