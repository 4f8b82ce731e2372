"""The course's command lines: `python -m lib.train` and `python -m lib.run`.

Chapter 0 ("How this course runs") shows both; README.md lists their common uses. Each checks
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

DATASET_FLAGS = ("data_root", "image_size", "n_train", "n_val", "n_test", "val_fraction", "download")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


# ---------------------------------------------------------------------------------------------
# python -m lib.train


def train_parser() -> argparse.ArgumentParser:
    """The parser of `python -m lib.train`: data and model flags, then one flag per TrainConfig field."""
    parser = _Parser(prog="python -m lib.train", description="Train a model on a dataset; print one row "
                     "per epoch and write the test metrics as JSON.")
    what = parser.add_argument_group("data and model")
    add = what.add_argument
    add("--dataset", default="shapes", help="shapes, digits, cifar10, imagenette, imagenet or folder (default shapes)")
    add("--model", default="seed_cnn", help="seed_cnn, small_resnet, or a torchvision name such as resnet18")
    add("--data-root", default=None, help="folder of a dataset read from disk")
    add("--image-size", type=int, default=None, help="image side in pixels (default depends on the dataset; a "
        "folder of images of one size keeps it)")
    add("--n-train", type=int, default=10_000, help="training images to generate (shapes only)")
    add("--n-val", type=int, default=2_000, help="validation images to generate (shapes only; 0: no validation)")
    add("--n-test", type=int, default=2_000, help="test images to generate (shapes only)")
    add("--val-fraction", type=float, default=0.1, help="share of train/ held out for validation where a "
        "dataset has no validation split (0: no validation)")
    add("--download", action="store_true", help="download CIFAR-10 or Imagenette into --data-root if missing")
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
        data=_data_arguments(args),
        config=result.config, history=result.history, provenance=result.provenance)
    print(f"test accuracy {record.test_accuracy:.2%}, weighted F1 {record.f1_weighted:.4f}, "
          f"macro F1 {record.f1_macro:.4f}")
    if args.metrics_out:
        record.save(args.metrics_out)
        print(f"metrics written to {args.metrics_out}")
    return 0


def _data_arguments(args) -> dict:
    """How the dataset was loaded, for the record: the arguments that applied to this dataset."""
    used = {"data_root": args.data_root, "image_size": args.image_size}
    if args.dataset == "shapes":
        used.update(n_train=args.n_train, n_val=args.n_val, n_test=args.n_test)
    elif args.dataset != "digits":
        used["val_fraction"] = args.val_fraction
    return used


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
