"""Linear probe and fine-tuning of ImageNet-trained EfficientNet-Lite0 on the real CIFAR-10 (chapter 6.2).

Usage: python benchmarks/transfer_cifar10.py [--archive ../shared/data/cifar10-jpeg.tar.gz]
           [--per-class 5000] [--val-images 5000] [--test-images 10000] [--size 96]
           [--finetune-steps 0] [--no-probe] [--out /tmp/transfer_cifar10.json]

The archive (CIFAR-10 as JPEG folders) is extracted to a temporary folder that is removed afterwards;
nothing derived from it is written inside the repository (embeddings are cached under /tmp). The
defaults use every image; smaller --per-class/--val-images/--test-images measure a subset (the JSON
says which). The result is compared with the article's CNN trained from scratch (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from lib import data, pretrained, results, transfer  # noqa: E402
from lib.files import write_json  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", default=str(HERE.parent / "shared/data/cifar10-jpeg.tar.gz"))
    parser.add_argument("--per-class", type=int, default=5000, help="training images per class (the probe)")
    parser.add_argument("--val-images", type=int, default=5000, help="validation images (choose C)")
    parser.add_argument("--test-images", type=int, default=10000, help="test images scored")
    parser.add_argument("--size", type=int, default=96, help="input side in pixels")
    parser.add_argument("--finetune-steps", type=int, default=0, help="fine-tuning updates (0: none)")
    parser.add_argument("--no-probe", action="store_true", help="skip the linear probe (measure fine-tuning only)")
    parser.add_argument("--cache", default="/tmp/transfer_cifar10_cache")
    parser.add_argument("--out", default="/tmp/transfer_cifar10.json")
    args = parser.parse_args()
    archive = Path(args.archive)
    if not archive.is_file():
        print(f"error: {archive} not found: pass --archive with the CIFAR-10 JPEG archive", file=sys.stderr)
        return 2
    transfer.check_size(args.size)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        with tarfile.open(archive) as tar:
            tar.extractall(work, filter="data")
        full = data.load("cifar10", work, image_size=32, seed=0, val_fraction=0.1, in_memory=True)
        rng = np.random.default_rng(0)
        train_index = transfer.per_class(full.train.labels.numpy(), min(args.per_class, 4500), seed=0)
        val_index = np.sort(rng.permutation(len(full.val))[: args.val_images])
        test_index = np.sort(rng.permutation(len(full.test))[: args.test_images])
        cut = transfer.subset(full, train_index)
        cut = cut.__class__(**{**cut.__dict__,
                               "val": data.TensorSplit(full.val.images[val_index], full.val.labels[val_index]),
                               "test": data.TensorSplit(full.test.images[test_index],
                                                        full.test.labels[test_index])})
        print(cut, flush=True)
        row = {"dataset": "cifar10 (real, JPEG)", "network": "efficientnet_lite0 (ILSVRC-2012)",
               "size": args.size, "train_images": len(train_index), "val_images": len(val_index),
               "test_images": len(test_index)}
        if not args.no_probe:
            net = pretrained.load("efficientnet_lite0")
            xs = {s: transfer.embed(net, cut, s, size=args.size, cache_dir=args.cache)
                  for s in ("train", "val", "test")}
            probe = transfer.linear_probe(*xs["train"], *xs["val"])
            row.update(probe_C=probe.C, probe_val_acc=probe.val_acc, probe_test_acc=probe.score(*xs["test"]))
            print(f"linear probe: test accuracy {row['probe_test_acc']:.2%} (C={probe.C})", flush=True)
        if args.finetune_steps:
            model, fit = transfer.train_network(cut, pretrained_weights=True, size=args.size,
                                                steps=args.finetune_steps, seed=0)
            row.update(finetune_steps=args.finetune_steps, finetune_test_acc=transfer.accuracy(model, cut, "test"))
            print(f"fine-tuned: test accuracy {row['finetune_test_acc']:.2%}", flush=True)
    row.update(seconds=time.perf_counter() - started, provenance=results.provenance("cpu"))
    write_json(args.out, row, default=str)
    print(f"wrote {args.out} ({row['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
