"""Scoring a network on a dataset split, and the command line `python -m lib.evaluate`.

Two kinds of network are scored: an ImageNet-trained one from `lib.pretrained` (`--pretrained`) on
an ImageNet-layout folder, with the network's own preprocessing; or a checkpoint written by
`lib.train` (`--checkpoint`), on the dataset it was trained on, with `lib.data`'s preprocessing.
Both write the metrics file of `lib.train` (a `lib.results.RunRecord`, with `split` naming the split
scored). Chapter 6.1 ("What an ImageNet network sees") uses it; run `python -m lib.evaluate --help`.

In an ImageNet-layout folder (`<root>/<split>/<wnid>/<image>`, any subset of the 1000 classes, any
image size or mode), the labels are the classes' indices among the 1000 wnids in ILSVRC-2012 order,
not the positions of the folders found, so that they match the network's outputs.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
from pathlib import Path

import torch

from lib import checkpoint, data, files, metrics, models, pretrained, results

PRETRAINED_DATASETS = ("imagenet", "folder")  # ImageNet-layout folders whose class folders are wnids
SPLITS = ("val", "test")


def run_record(scores: torch.Tensor, labels: torch.Tensor, *, dataset: str, model: str, split: str,
               seconds: float, device, parameters: int, image_size: int, **fields) -> results.RunRecord:
    """The metrics record of one scored split: `lib.metrics.report` of the scores (top-1 under
    `test_accuracy`, as `lib.train` writes it, with `split` saying which split it was), the speed,
    the device and the provenance. `fields` are RunRecord's other fields (`data`, `config`,
    `history`, `extra`)."""
    summary = metrics.report(scores, labels, scores.shape[1])
    return results.RunRecord(
        dataset=dataset, model=model, split=split, test_accuracy=summary.pop("accuracy"), **summary,
        images_per_second=len(labels) / seconds if seconds else 0.0, seconds=seconds, device=str(device),
        parameters=parameters, image_size=image_size, test_size=len(labels),
        provenance=results.provenance(device), **fields)


# ---------------------------------------------------------------------------------------------
# ImageNet-layout folders scored by an ImageNet network


def wnid_folder(folder: str | os.PathLike, wnids) -> tuple[list[str], torch.Tensor, list[str]]:
    """List `folder/<wnid>/<image>`: (paths, labels as indices into `wnids`, wnids found).
    Raises DatasetError naming the first class folder that is not one of `wnids`."""
    folder = Path(folder)
    paths, positions, found = data.scan_folder(folder)
    index = {wnid: i for i, wnid in enumerate(wnids)}
    unknown = [name for name in found if name not in index]
    if unknown:
        raise data.DatasetError(f"class folder {folder / unknown[0]} is not an ILSVRC-2012 wnid (such as "
                                f"n01440764); an ImageNet network can score only folders named by wnid")
    return paths, torch.tensor([index[found[p]] for p in positions], dtype=torch.int64), found


class _Images(torch.utils.data.Dataset):
    """Image files through a transform; a file that cannot be read yields its error message instead."""

    def __init__(self, paths, labels, transform, crop: int):
        self.paths, self.labels, self.transform, self.crop = paths, labels, transform, crop

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        from PIL import Image

        try:
            with Image.open(self.paths[i]) as image:
                return self.transform(image), self.labels[i], ""
        except Exception as error:  # PIL raises several types for damaged files
            first = str(error).splitlines()[0] if str(error) else type(error).__name__
            return torch.zeros(3, self.crop, self.crop), self.labels[i], f"cannot read image {self.paths[i]}: {first}"


def score_folder(net: pretrained.Pretrained, paths: list[str], labels: torch.Tensor, batch_size: int = 64,
                 num_workers: int | None = None, log=print) -> tuple[torch.Tensor, float]:
    """Logits (N, 1000) of `net` on image files, decoded and preprocessed as the network expects,
    and the seconds it took. Prints a one-line progress summary about every 10 s."""
    if num_workers is None:
        num_workers = 0 if len(paths) <= batch_size else min(8, os.cpu_count() or 1)
    loader = torch.utils.data.DataLoader(_Images(paths, labels, net.transform, net.crop), batch_size=batch_size,
                                         num_workers=num_workers, pin_memory=net.device.type == "cuda")
    scores, done, started, shown = [], 0, time.perf_counter(), time.perf_counter()
    for x, _, errors in loader:
        broken = [e for e in errors if e]
        if broken:
            raise data.DatasetError(f"{broken[0]}; the file is damaged: replace or delete it")
        scores.append(net.logits(x))
        done += len(x)
        if time.perf_counter() - shown > 10:
            shown = time.perf_counter()
            log(f"{done:,} of {len(paths):,} images, {done / (shown - started):,.1f} images/s")
    return torch.cat(scores), time.perf_counter() - started


# ---------------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(2, f"error: {message} (see python -m lib.evaluate --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m lib.evaluate", description="Score an ImageNet-trained network "
                     "(--pretrained) or a checkpoint of python -m lib.train (--checkpoint) on a dataset split; "
                     "write the metrics as JSON.")
    add = parser.add_argument
    add("--dataset", required=True, help=f"one of {', '.join(data.DATASETS)}; --pretrained needs imagenet or "
        "folder (an ImageNet-layout folder <root>/<split>/<wnid>/<images>)")
    add("--data-root", default=None, help="folder of a dataset read from disk")
    add("--model", default="efficientnet_lite0", help="efficientnet_lite0 (ImageNet weights offline), a "
        "torchvision name such as resnet50, or seed_cnn/small_resnet with --checkpoint")
    add("--pretrained", action="store_true", help="use the network's ImageNet weights")
    add("--checkpoint", default=None, help="a checkpoint file (last.pt) written by python -m lib.train")
    add("--split", choices=SPLITS, default=None, help="split to score (default: val for --pretrained, where "
        "ImageNet's val set is its test set; test for --checkpoint)")
    add("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    add("--batch-size", type=int, default=64)
    add("--num-workers", type=int, default=None, help="image decoding processes (default: one per CPU core, "
        "at most 8; none for a folder that fits in one batch)")
    add("--image-size", type=int, default=None, help="with --checkpoint: the image size it was trained at")
    add("--seed", type=int, default=None, help="with --checkpoint: the seed of the data (default: the "
        "checkpoint's)")
    add("--n-train", type=int, default=10_000, help="with --checkpoint on shapes: as in training")
    add("--n-val", type=int, default=2_000, help="with --checkpoint on shapes: as in training")
    add("--n-test", type=int, default=2_000, help="with --checkpoint on shapes: as in training")
    add("--val-fraction", type=float, default=0.1, help="with --checkpoint: as in training (it sets the "
        "normalisation statistics where validation images are carved from train/)")
    add("--metrics-out", default=None, help="write the metrics here as JSON")
    add("--predictions-out", default=None, help="write each image's top-5 classes here as CSV")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except (data.DatasetError, models.ModelError, pretrained.PretrainedError, checkpoint.CheckpointError,
            results.ResultsError, ValueError) as error:
        print(f"error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return 2


def _check(args) -> None:
    """Everything that can be checked before any work or any write."""
    data.check_name(args.dataset)
    if args.pretrained == (args.checkpoint is not None):
        raise ValueError("give exactly one of --pretrained (the network's ImageNet weights) and --checkpoint FILE "
                         "(a model trained with python -m lib.train)")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.num_workers is not None and args.num_workers < 0:
        raise ValueError(f"--num-workers must be 0 or more, got {args.num_workers}")
    if args.data_root is not None and not Path(args.data_root).expanduser().is_dir():
        raise data.DatasetError(f"data root {args.data_root} does not exist")
    if args.pretrained:
        if args.model in models.OWN_MODELS:
            raise models.ModelError(f"{args.model} has no ImageNet weights; --pretrained is for efficientnet_lite0 "
                                    "or torchvision's classifiers (score a trained one with --checkpoint)")
        pretrained.check_name(args.model)
        if args.dataset not in PRETRAINED_DATASETS:
            hint = " (for Imagenette: --dataset folder --data-root its imagenette2-* folder)" \
                if args.dataset == "imagenette" else ""
            raise data.DatasetError(f"--pretrained scores ImageNet's 1000 classes, so it needs --dataset imagenet "
                                    f"or folder with class folders named by wnid, not {args.dataset}{hint}")
        if args.data_root is None:
            raise data.DatasetError(f"--dataset {args.dataset} is read from disk: pass --data-root with its folder")
    else:
        if args.model != "efficientnet_lite0":
            models.check_name(args.model)
        data.check_arguments(args.dataset, args.data_root, image_size=args.image_size, seed=args.seed or 0,
                             n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
                             val_fraction=args.val_fraction)
    from lib.train import pick_device

    pick_device(args.device)


def _run(args) -> int:
    _check(args)
    from lib.train import pick_device

    device = pick_device(args.device)
    if args.pretrained:
        split = args.split or "val"
        folder = Path(args.data_root).expanduser() / split
        wnids = pretrained.imagenet_wnids()
        paths, labels, found = wnid_folder(folder, wnids)
        net = pretrained.load(args.model, device)
        print(f"{net}\nscoring {len(paths):,} images of {len(found)} classes in {folder}")
        scores, seconds = score_folder(net, paths, labels, args.batch_size, args.num_workers)
        names = [os.path.relpath(path, folder) for path in paths]
        label_names = list(wnids)
        record = run_record(
            scores, labels, dataset=args.dataset, model=args.model, split=split, seconds=seconds, device=device,
            parameters=models.count_parameters(net.model), image_size=net.crop, data={"data_root": args.data_root},
            extra={"weights": "ImageNet (ILSVRC-2012)", "classes_present": len(found),
                   "preprocessing": {"resize": net.resize, "crop": net.crop, "interpolation": net.interpolation,
                                     "mean": list(net.mean), "std": list(net.std)}})
    else:
        split = args.split or "test"
        model, dataset, saved, loading = _from_checkpoint(args, device)
        print(f"{dataset}\nscoring the {split} split with {args.checkpoint}")
        from lib.config import TrainConfig
        from lib.train import predict

        started = time.perf_counter()
        scores, labels = predict(model, dataset, split, args.batch_size)
        seconds = time.perf_counter() - started
        names = [str(i) for i in range(len(labels))]
        label_names = dataset.classes
        record = run_record(
            scores, labels, dataset=args.dataset, model=args.model, split=split, seconds=seconds, device=device,
            parameters=models.count_parameters(model), image_size=dataset.image_size, data=loading,
            train_size=len(dataset.train), val_size=len(dataset.val),
            config=TrainConfig.from_dict(saved["config"]) if saved.get("config") else None,
            history=list(saved.get("history", [])), extra={"weights": str(args.checkpoint)})
    top5 = f", top-5 {record.top5_accuracy:.2%}" if record.top5_accuracy is not None else ""
    print(f"{split} accuracy {record.test_accuracy:.2%}{top5} on {record.test_size:,} images, "
          f"{record.images_per_second:,.1f} images/s on {device}")
    if args.predictions_out:
        write_predictions(args.predictions_out, names, labels, scores, label_names)
        print(f"predictions written to {args.predictions_out}")
    if args.metrics_out:
        record.save(args.metrics_out)
        print(f"metrics written to {args.metrics_out}")
    return 0


def _loading(args, seed: int) -> dict:
    """The arguments of data.load that apply to this dataset (as lib.train records them)."""
    used = {"data_root": args.data_root, "image_size": args.image_size, "seed": seed}
    if args.dataset == "shapes":
        used.update(n_train=args.n_train, n_val=args.n_val, n_test=args.n_test)
    elif args.dataset != "digits":
        used["val_fraction"] = args.val_fraction
    return used


def _from_checkpoint(args, device):
    """Load a lib.train checkpoint, the data it was trained on, and the model; fail if they do not fit."""
    saved = checkpoint.load(args.checkpoint)
    seed = args.seed if args.seed is not None else int(saved.get("config", {}).get("seed", 0))
    loading = _loading(args, seed)
    dataset = data.load(args.dataset, **{("root" if k == "data_root" else k): v for k, v in loading.items()})
    if args.model == "efficientnet_lite0":
        if dataset.channels != 3:
            raise models.ModelError(f"efficientnet_lite0 takes RGB images; {args.dataset} has {dataset.channels} "
                                    "channel(s)")
        model = pretrained.EfficientNetLite(dataset.num_classes)
    else:
        model = models.build(args.model, dataset.num_classes, dataset.channels, dataset.image_size, seed=None)
    try:
        model.load_state_dict(saved["model"])
    except (RuntimeError, KeyError) as error:
        raise checkpoint.CheckpointError(
            f"{args.checkpoint} does not fit {args.model} on {args.dataset} ({dataset.num_classes} classes, "
            f"{dataset.image_size}px): {str(error).strip().splitlines()[0]}; give the --model, --dataset and "
            "--image-size it was trained with") from None
    return model.to(device).eval(), dataset, saved, loading


def write_predictions(path, names, labels, scores, label_names) -> None:
    """Write each image's label and top-5 classes (and the top class's probability) as CSV, atomically."""
    k = min(5, scores.shape[1])
    top = scores.softmax(1).topk(k, dim=1)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["image", "label", *[f"top{i + 1}" for i in range(k)], "top1_probability"])
    for name, label, indices, values in zip(names, labels.tolist(), top.indices.tolist(), top.values.tolist()):
        writer.writerow([name, label_names[label], *[label_names[j] for j in indices], f"{values[0]:.6f}"])
    files.write_text(path, buffer.getvalue())


if __name__ == "__main__":
    sys.exit(main())
