"""Why chapter 5 trains on the easy shapes: its recipes on each difficulty, at the chapter's budget.

    python benchmarks/chapter5_defaults.py [--difficulties standard,easy] [--n-train 1200]
        [--epochs 6] [--seeds 0,1,2] [--threads 1] [--out FILE.json]

Chapter 5 ("Hands-on project") trains about fifteen short runs and must stay near a minute on a
laptop CPU. This script trains its four recipes (the article's baseline, + augmentation, the small
residual network + augmentation, the baseline at learning rate 0.003) with the chapter's settings
(`lib.data.load("shapes", difficulty=...)`, AdamW without weight decay at a constant rate, batch
32) once per seed on each difficulty of `lib.shapes.DIFFICULTIES`, and prints the validation
accuracy of every run and each recipe's mean and range. The output is recorded in
benchmarks/README.md ("Chapter 5's defaults").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lib import data, files, models, results, shapes, train  # noqa: E402

BASELINE = dict(optimizer="adamw", weight_decay=0.0, schedule="constant", augment=False, lr=1e-3,
                batch_size=32)
# recipe name -> (model, its widths (chapter 5's resnet_widths for small_resnet), training changes)
RECIPES = {
    "baseline": ("seed_cnn", None, {}),
    "+ augmentation": ("seed_cnn", None, {"augment": True}),
    "small_resnet + augmentation": ("small_resnet", (8, 16, 32), {"augment": True}),
    "lr 0.003": ("seed_cnn", None, {"lr": 3e-3}),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--difficulties", default=",".join(shapes.DIFFICULTIES))
    parser.add_argument("--n-train", type=int, default=1200)
    parser.add_argument("--n-val", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated names of RECIPES")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows here as JSON")
    args = parser.parse_args(argv)
    difficulties = [d for d in args.difficulties.split(",") if d]
    recipes = [r for r in args.recipes.split(",") if r]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    for difficulty in difficulties:  # every argument is checked before any training
        try:
            data.check_arguments("shapes", n_train=args.n_train, n_val=args.n_val, difficulty=difficulty)
        except data.DatasetError as error:
            parser.error(str(error))
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        parser.error(f"unknown recipe(s) {unknown}; choose from {', '.join(RECIPES)}")
    if not seeds or args.epochs < 1:
        parser.error("give at least one seed and one epoch")
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for difficulty in difficulties:
        dataset = data.load("shapes", seed=0, n_train=args.n_train, n_val=args.n_val, n_test=10,
                            difficulty=difficulty)
        print(dataset, flush=True)
        for name in recipes:
            model, widths, changes = RECIPES[name]
            for seed in seeds:
                started = time.perf_counter()
                net = models.for_dataset(model, dataset, seed=seed, widths=widths)
                result = train.fit(net, dataset, epochs=args.epochs, seed=seed,
                                   device="cpu", progress=False, log=lambda line: None,
                                   **{**BASELINE, **changes})
                last = result.history[-1]
                rows.append({"difficulty": difficulty, "recipe": name, "seed": seed, "val_acc": last["val_acc"],
                             "train_acc": last["train_acc"], "seconds": time.perf_counter() - started})
                print(f"{difficulty:>9} {name:>28} seed {seed}: validation {last['val_acc']:.1%}, "
                      f"training {last['train_acc']:.1%} ({rows[-1]['seconds']:.0f} s)", flush=True)

    print(f"\n{'difficulty':>10} {'recipe':>28} {'mean':>6}  range over seeds {seeds}")
    for difficulty in difficulties:
        for name in recipes:
            accs = [r["val_acc"] for r in rows if r["difficulty"] == difficulty and r["recipe"] == name]
            print(f"{difficulty:>10} {name:>28} {statistics.mean(accs):>6.1%}  {min(accs):.1%} to {max(accs):.1%}")
    if args.out is not None:
        files.write_json(args.out, {"settings": {**vars(args), "out": str(args.out)}, "baseline": BASELINE,
                                    "rows": rows, "machine": results.provenance("cpu")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
