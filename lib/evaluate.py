"""Scoring a network on a dataset split; its command line, `python -m lib.evaluate`, is in `lib.cli`.

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


def from_checkpoint(saved: dict, path, model_name: str, dataset_name: str, loading: dict, device):
    """The model of a `lib.train` checkpoint (`saved`, read from `path`) with its weights, on `device`
    and in eval mode, and the dataset it was trained on, loaded with `loading` (data.load's arguments,
    as the training recorded them). Raises CheckpointError when the weights do not fit the model."""
    dataset = data.load(dataset_name, **{("root" if k == "data_root" else k): v for k, v in loading.items()})
    if model_name == "efficientnet_lite0":
        if dataset.channels != 3:
            raise models.ModelError(f"efficientnet_lite0 takes RGB images; {dataset_name} has {dataset.channels} "
                                    "channel(s)")
        model = pretrained.EfficientNetLite(dataset.num_classes)
    else:
        model = models.build(model_name, dataset.num_classes, dataset.channels, dataset.image_size, seed=None)
    try:
        model.load_state_dict(saved["model"])
    except (RuntimeError, KeyError) as error:
        raise checkpoint.CheckpointError(
            f"{path} does not fit {model_name} on {dataset_name} ({dataset.num_classes} classes, "
            f"{dataset.image_size}px): {str(error).strip().splitlines()[0]}; give the --model, --dataset and "
            "--image-size it was trained with") from None
    return model.to(device).eval(), dataset


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


def main(argv: list[str] | None = None) -> int:
    """`python -m lib.evaluate` (the command line lives in `lib.cli`)."""
    from lib import cli

    return cli.evaluate_main(argv)


if __name__ == "__main__":
    sys.exit(main())
