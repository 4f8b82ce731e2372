"""The course's command lines: `python -m lib.train`, `python -m lib.evaluate` and `python -m lib.run`.

Chapter 0 ("How this course runs") shows training and `lib.run`, chapter 6.1 scoring; README.md lists
their common uses. `lib.train` and `lib.evaluate` share one group of dataset flags. Each checks
everything it can before any work (asking the owners of the rules: `TrainConfig.check`,
`lib.data.check_arguments`, `lib.models.check_name`, `lib.train.prepare`) and ends a bad call with
a one-line message and exit code 2, overwriting nothing. The training flags are derived from
`TrainConfig`'s fields, so every setting has a flag (`python -m lib.train --help`).
`torchrun --nproc_per_node=N -m lib.train ...` runs the same command in N processes that train
together (lib.distributed); the first process (of each machine, for errors) alone prints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lib.config import TrainConfig

DATASET_FLAGS = ("data_root", "image_size", "n_train", "n_val", "n_test", "difficulty", "val_fraction", "download")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------------------------------------
# The dataset flags that python -m lib.train and python -m lib.evaluate share


def add_data_arguments(group, *, required: bool = False) -> None:
    """Add the flags that choose a dataset and how it is loaded (`lib.data.load`'s arguments) to an
    argparse group. `python -m lib.evaluate --checkpoint` takes the same values as the training did."""
    add = group.add_argument
    add("--dataset", required=required, default=None if required else "shapes",
        help="shapes, digits, cifar10, imagenette, imagenet or folder" + ("" if required else " (default shapes)"))
    add("--data-root", default=None, help="folder of a dataset read from disk")
    add("--image-size", type=int, default=None, help="image side in pixels (default depends on the dataset; a "
        "folder of images of one size keeps it)")
    add("--n-train", type=int, default=10_000, help="training images to generate (shapes only)")
    add("--n-val", type=int, default=2_000, help="validation images to generate (shapes only; 0: no validation)")
    add("--n-test", type=int, default=2_000, help="test images to generate (shapes only)")
    add("--difficulty", default="standard", help="how hard the generated images are: standard or easy (shapes "
        "only; lib.shapes.DIFFICULTIES)")
    add("--val-fraction", type=float, default=0.1, help="share of train/ held out for validation where a "
        "dataset has no validation split (0: no validation)")


def data_arguments(args) -> dict:
    """How the dataset was loaded, for the metrics record: the dataset flags that apply to it."""
    used = {"data_root": args.data_root, "image_size": args.image_size}
    if args.dataset == "shapes":
        used.update(n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, difficulty=args.difficulty)
    elif args.dataset != "digits":
        used["val_fraction"] = args.val_fraction
    return used


# ---------------------------------------------------------------------------------------------
# python -m lib.train


def train_parser() -> argparse.ArgumentParser:
    """The parser of `python -m lib.train`: data and model flags, then one flag per TrainConfig field."""
    parser = _Parser(prog="python -m lib.train", description="Train a model on a dataset; print one row "
                     "per epoch and write the test metrics as JSON.")
    what = parser.add_argument_group("data and model")
    add_data_arguments(what)
    what.add_argument("--model", default="seed_cnn", help="seed_cnn, small_resnet, or a torchvision name such as "
                      "resnet18")
    what.add_argument("--download", action="store_true", help="download CIFAR-10 or Imagenette into --data-root "
                      "if missing")
    TrainConfig.add_arguments(parser.add_argument_group("training settings (lib.config.TrainConfig)"))
    run = parser.add_argument_group("checkpoints and output")
    add = run.add_argument
    add("--checkpoint-dir", default=None, help="write last.pt here after every epoch")
    add("--resume", action="store_true", help="continue from --checkpoint-dir/last.pt")
    add("--stop-after", type=int, default=None, help="stop after N epochs of this run, as an interruption would")
    add("--metrics-out", default=None, help="write the metrics here as JSON (lib.results.RunRecord)")
    add("--quiet", action="store_true", help="no progress bar")
    return parser


def train_main(argv: list[str] | None = None) -> int:
    """Run `python -m lib.train` with `argv` (default: the process's arguments); the exit code."""
    args = train_parser().parse_args(argv)
    from lib import checkpoint, data, distributed, models

    try:
        return _train(args)
    except (data.DatasetError, models.ModelError, checkpoint.CheckpointError, distributed.LaunchError,
            ValueError) as error:
        if distributed.reports_errors():  # under torchrun: once per machine, not once per process
            print(f"error: {error}", file=sys.stderr)
        return 2


def check_train_arguments(args):
    """Everything `python -m lib.train` can check before any work or any write, each by its owner:
    the settings (TrainConfig.check, through train.prepare, which also picks the device and reads
    the checkpoint to resume), the dataset's arguments (data.check_arguments) and the model's name
    (models.check_name). Returns (setup, the arguments of data.load)."""
    from lib import data, models, train

    config = TrainConfig.from_args(args)
    loading = {name: getattr(args, name) for name in DATASET_FLAGS}
    data.check_arguments(args.dataset, loading.pop("data_root"), seed=config.seed, **loading)
    models.check_name(args.model)
    setup = train.prepare(config, checkpoint_dir=args.checkpoint_dir, resume=args.resume, stop_after=args.stop_after)
    return setup, loading


def _train(args) -> int:
    from lib import distributed

    setup, loading = check_train_arguments(args)
    with distributed.joined(setup.context, setup.device) as context:  # under torchrun; left at the end
        return _train_and_test(args, setup, loading, context)


def _train_and_test(args, setup, loading, context) -> int:
    """Load, train (every process), then test and write the metrics (the main process alone, on
    the whole test split: all processes hold the same model after training)."""
    from lib import data, distributed, metrics, models, results, train

    config = setup.config
    print_ = distributed.main_only(print, context)
    dataset = data.load(args.dataset, args.data_root, seed=config.seed, **loading)
    print_(dataset)
    model = models.for_dataset(args.model, dataset, seed=config.seed)
    result = train.fit(model, dataset, setup=setup, progress=not args.quiet, log=print_)
    if result.stopped_early or not context.is_main:
        return 0
    scores, labels = train.predict(model, dataset, "test")
    summary = metrics.report(scores, labels, dataset.num_classes)
    record = results.RunRecord(
        dataset=args.dataset, model=args.model, test_accuracy=summary.pop("accuracy"), **summary,
        images_per_second=result.images_per_second, seconds=result.seconds, device=result.device,
        parameters=models.count_parameters(model), image_size=dataset.image_size, train_size=len(dataset.train),
        val_size=len(dataset.val), test_size=len(dataset.test),
        data=data_arguments(args),
        config=result.config, history=result.history, provenance=result.provenance)
    print(f"test accuracy {record.test_accuracy:.2%}, weighted F1 {record.f1_weighted:.4f}, "
          f"macro F1 {record.f1_macro:.4f}")
    if args.metrics_out:
        record.save(args.metrics_out)
        print(f"metrics written to {args.metrics_out}")
    return 0


# ---------------------------------------------------------------------------------------------
# python -m lib.evaluate


def evaluate_parser() -> argparse.ArgumentParser:
    """The parser of `python -m lib.evaluate` (scoring: `lib.evaluate`)."""
    from lib import evaluate

    parser = _Parser(prog="python -m lib.evaluate", description="Score an ImageNet-trained network "
                     "(--pretrained) or a checkpoint of python -m lib.train (--checkpoint) on a dataset split; "
                     "write the metrics as JSON.")
    what = parser.add_argument_group("data (with --checkpoint: as in training)")
    add_data_arguments(what, required=True)
    what.add_argument("--seed", type=int, default=None, help="with --checkpoint: the seed of the data (default: "
                      "the checkpoint's)")
    net = parser.add_argument_group("network")
    add = net.add_argument
    add("--model", default="efficientnet_lite0", help="efficientnet_lite0 (ImageNet weights offline), a "
        "torchvision name such as resnet50, or seed_cnn/small_resnet with --checkpoint")
    add("--pretrained", action="store_true", help="use the network's ImageNet weights; --dataset imagenet or "
        "folder (an ImageNet-layout folder <root>/<split>/<wnid>/<images>)")
    add("--checkpoint", default=None, help="a checkpoint file (last.pt) written by python -m lib.train")
    run = parser.add_argument_group("scoring and output")
    add = run.add_argument
    add("--split", choices=evaluate.SPLITS, default=None, help="split to score (default: val for --pretrained, "
        "where ImageNet's val set is its test set; test for --checkpoint)")
    add("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    add("--batch-size", type=int, default=64)
    add("--num-workers", type=int, default=None, help="image decoding processes (default: one per CPU core, "
        "at most 8; none for a folder that fits in one batch)")
    add("--metrics-out", default=None, help="write the metrics here as JSON")
    add("--predictions-out", default=None, help="write each image's top-5 classes here as CSV")
    return parser


def evaluate_main(argv: list[str] | None = None) -> int:
    """Run `python -m lib.evaluate` with `argv` (default: the process's arguments); the exit code."""
    args = evaluate_parser().parse_args(argv)
    from lib import checkpoint, data, models, pretrained, results

    try:
        return _evaluate(args)
    except (data.DatasetError, models.ModelError, pretrained.PretrainedError, checkpoint.CheckpointError,
            results.ResultsError, ValueError) as error:
        print(f"error: {str(error).strip().splitlines()[0]}", file=sys.stderr)
        return 2


def check_evaluate_arguments(args):
    """Everything `python -m lib.evaluate` can check before any work or any write, each by its owner;
    returns the device to score on (`lib.train.pick_device`, which also checks `--device`)."""
    from lib import data, evaluate, models, pretrained
    from lib.train import pick_device

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
        if args.dataset not in evaluate.PRETRAINED_DATASETS:
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
                             n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, difficulty=args.difficulty,
                             val_fraction=args.val_fraction)
    return pick_device(args.device)


def _evaluate(args) -> int:
    import os
    import time

    from lib import checkpoint, evaluate, models, pretrained
    from lib.config import TrainConfig
    from lib.train import predict

    device = check_evaluate_arguments(args)
    if args.pretrained:
        split = args.split or "val"
        folder = Path(args.data_root).expanduser() / split
        wnids = pretrained.imagenet_wnids()
        paths, labels, found = evaluate.wnid_folder(folder, wnids)
        net = pretrained.load(args.model, device)
        print(f"{net}\nscoring {len(paths):,} images of {len(found)} classes in {folder}")
        scores, seconds = evaluate.score_folder(net, paths, labels, args.batch_size, args.num_workers)
        names = [os.path.relpath(path, folder) for path in paths]
        label_names = list(wnids)
        record = evaluate.run_record(
            scores, labels, dataset=args.dataset, model=args.model, split=split, seconds=seconds, device=device,
            parameters=models.count_parameters(net.model), image_size=net.crop, data={"data_root": args.data_root},
            extra={"weights": "ImageNet (ILSVRC-2012)", "classes_present": len(found),
                   "preprocessing": {"resize": net.resize, "crop": net.crop, "interpolation": net.interpolation,
                                     "mean": list(net.mean), "std": list(net.std)}})
    else:
        split = args.split or "test"
        saved = checkpoint.load(args.checkpoint)
        seed = args.seed if args.seed is not None else int(saved.get("config", {}).get("seed", 0))
        loading = {**data_arguments(args), "seed": seed}
        model, dataset = evaluate.from_checkpoint(saved, args.checkpoint, args.model, args.dataset, loading, device)
        print(f"{dataset}\nscoring the {split} split with {args.checkpoint}")
        started = time.perf_counter()
        scores, labels = predict(model, dataset, split, args.batch_size)
        seconds = time.perf_counter() - started
        names = [str(i) for i in range(len(labels))]
        label_names = dataset.classes
        record = evaluate.run_record(
            scores, labels, dataset=args.dataset, model=args.model, split=split, seconds=seconds, device=device,
            parameters=models.count_parameters(model), image_size=dataset.image_size, data=loading,
            train_size=len(dataset.train), val_size=len(dataset.val),
            config=TrainConfig.from_dict(saved["config"]) if saved.get("config") else None,
            history=list(saved.get("history", [])), extra={"weights": str(args.checkpoint)})
    top5 = f", top-5 {record.top5_accuracy:.2%}" if record.top5_accuracy is not None else ""
    print(f"{split} accuracy {record.test_accuracy:.2%}{top5} on {record.test_size:,} images, "
          f"{record.images_per_second:,.1f} images/s on {device}")
    if args.predictions_out:
        evaluate.write_predictions(args.predictions_out, names, labels, scores, label_names)
        print(f"predictions written to {args.predictions_out}")
    if args.metrics_out:
        record.save(args.metrics_out)
        print(f"metrics written to {args.metrics_out}")
    return 0


# ---------------------------------------------------------------------------------------------
# python -m lib.run


def run_parser() -> argparse.ArgumentParser:
    """The parser of `python -m lib.run`."""
    parser = _Parser(prog="python -m lib.run", description="Run a chapter notebook with parameters (papermill) "
                     "into an output folder and collect its glued values into metrics.json; with --grid, run "
                     "every combination and collect them into sweep.csv and sweep.json.")
    parser.add_argument("notebook", help="the chapter notebook, e.g. chapters/05_hands_on_project.ipynb")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="set a parameter (repeatable); values are read as papermill reads them")
    parser.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                        help="sweep a parameter over values (repeatable: every combination runs)")
    parser.add_argument("--out", default=None, help="output folder (default runs/<notebook>/<time-and-values>)")
    parser.add_argument("--until-tag", default=None, help="run only the cells up to the first one with this tag")
    parser.add_argument("--log-output", action="store_true", help="show the notebook's output while it runs")
    return parser


def _parse_grid(items: list[str]) -> dict[str, list]:
    from lib.run import RunError, parse_value

    grid = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise RunError(f"--grid {item!r} must look like NAME=V1,V2")
        if name in grid:
            raise RunError(f"--grid {name} is given twice")
        grid[name] = [parse_value(v) for v in values.split(",")]
    return grid


def run_main(argv: list[str] | None = None) -> int:
    """Run `python -m lib.run` with `argv` (default: the process's arguments); the exit code."""
    from lib import params, run

    args = run_parser().parse_args(argv)
    try:
        fixed = {name: run.parse_value(value) for name, value in args.parameter}
        grid = _parse_grid(args.grid)
        path = Path(args.notebook)
        if grid:
            rows = run.sweep(path, grid, fixed, args.out, until_tag=args.until_tag, log_output=args.log_output)
            return 1 if any(row["error"] for row in rows) else 0
        record = run.run_notebook(path, fixed, args.out, until_tag=args.until_tag, log_output=args.log_output)
    except (run.RunError, params.ParameterError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"ran {record['notebook']} in {record['seconds']:.1f} s -> {Path(record['output']).parent}")
    for name, value in record["metrics"].items():
        print(f"{name:>24}: {value}")
    return 0
