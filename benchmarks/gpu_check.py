"""The GPU path, measured in one command on a CUDA machine (written for one NVIDIA H200).

    python3 benchmarks/gpu_check.py --out gpu_check.json [--cifar10 ARCHIVE_OR_FOLDER]
        [--airbench-path DIR] [--budget-s 480]

Records, in one JSON file (printed as it goes):

1. training throughput of the course's models (seed_cnn, small_resnet and lib.fast's network on
   32x32 images; resnet18 and resnet50 on 224x224), random data, one SGD step per batch:
   images/s and peak GPU memory in float32, with mixed precision (AMP, bfloat16), AMP with the
   channels-last layout, and AMP + channels-last + torch.compile (compile for `--compile-models`);
2. with `--cifar10`: lib.fast's recipe against the `airbench` package's airbench94 on the same
   images and card, three seeds each: test accuracy and seconds (training + test-time-augmented
   evaluation, each after an untimed warm-up), and the ratio of the two times (goal: ours within
   2x of airbench94's);
3. with two or more GPUs: a two-process torchrun launch check over NCCL (`-m lib.distributed`);
   with one GPU the record says so.

Needs: Python with torch and torchvision built for CUDA, numpy and pillow (the H200 image's python3
has them all); this repository on PYTHONPATH (it is run from the repository root); nothing is
installed or downloaded. Optional: airbench 0.1.8 (pure Python) for part 2, either installed or
unpacked into a folder given by `--airbench-path` (the folder holding the `airbench` package), and
CIFAR-10 as the JPEG archive (../shared/data/cifar10-jpeg.tar.gz) or an extracted folder. Copy
both into an ignored folder of the repository so that they travel with it; benchmarks/README.md
gives the exact commands. Each part stops early, recording why, when `--budget-s` seconds are
spent, so that the whole check fits a short lease.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

MODELS = {  # name -> image side
    "seed_cnn": 32, "small_resnet": 32, "fast_net": 32, "resnet18": 224, "resnet50": 224,
}
MODES = ("fp32", "amp", "amp_channels_last", "amp_channels_last_compile")


class Budget:
    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


def build(name: str) -> nn.Module:
    from lib import fast, models

    if name == "fast_net":
        return fast.fast_net(10, 3)
    return models.build(name, 10 if MODELS[name] == 32 else 1000, 3, MODELS[name], seed=0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(name: str, mode: str, batch: int, steps: int, device: torch.device) -> dict:
    """Training images/s (forward, loss, backward, SGD step) and peak memory for one model and mode."""
    side = MODELS[name]
    model = build(name).to(device)
    channels_last = "channels_last" in mode
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    runner = torch.compile(model) if mode.endswith("compile") else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch, 3, side, side, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10 if side == 32 else 1000, (batch,), device=device)
    amp = mode != "fp32"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = nn.functional.cross_entropy(runner(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    compile_start = time.perf_counter()
    for _ in range(3):  # warm-up (and compilation)
        step()
    _sync(device)
    warmup_seconds = time.perf_counter() - compile_start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"model": name, "mode": mode, "batch_size": batch, "image_size": side,
            "images_per_second": batch * steps / seconds, "peak_memory_mib": peak, "warmup_seconds": warmup_seconds}


def part_throughput(args, budget: Budget, log) -> list[dict]:
    rows = []
    compile_models = set(args.compile_models.split(","))
    device = torch.device(args.device)
    for name in MODELS:
        batch = (512 if MODELS[name] == 32 else 128) if device.type == "cuda" else 8
        for mode in MODES:
            if mode.endswith("compile") and name not in compile_models:
                continue
            if budget.left() < 0:
                rows.append({"model": name, "mode": mode, "skipped": "time budget spent"})
                continue
            try:
                row = throughput(name, mode, batch, args.steps, device)
            except Exception as error:  # record the failure, keep measuring the others
                row = {"model": name, "mode": mode, "error": f"{type(error).__name__}: {str(error).splitlines()[0]}"}
            rows.append(row)
            log(json.dumps(row))
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def load_cifar10(source: Path, work: Path):
    from lib import data

    root = source
    if source.is_file():
        with tarfile.open(source) as tar:
            tar.extractall(work, filter="data")
        root = work
    return data.load("cifar10", root)


def part_recipes(args, budget: Budget, log) -> dict:
    import airbench_compare

    from lib import fast

    out = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as work:
        cifar = load_cifar10(args.cifar10, Path(work))
        out["dataset"] = {"train_size": len(cifar.train) + len(cifar.val), "test_size": len(cifar.test),
                          "source": str(args.cifar10)}
        seeds = tuple(range(args.seeds))
        quiet = {"log": lambda *a: None, "splits": ("train", "val"), "device": args.device, "amp": True}
        if args.epochs is not None:
            quiet_recipe = {"epochs": args.epochs}
        else:
            quiet_recipe = {}
        fast.train(cifar, quiet_recipe, seed=99, **quiet)  # warm-up: kernels chosen, memory allocated
        rows = []
        for seed in seeds:
            if budget.left() < 0:
                rows.append({"seed": seed, "skipped": "time budget spent"})
                continue
            result = fast.train(cifar, quiet_recipe, seed=seed, **quiet)
            rows.append({"seed": seed, "test_accuracy": result.test_accuracy, "seconds": result.seconds,
                         "test_accuracy_plain": result.test_accuracy_plain})
            log(f"lib.fast seed {seed}: {result.test_accuracy:.2%} in {result.seconds:.2f} s")
        out["lib_fast"] = {"recipe": fast.make_recipe(quiet_recipe), "rows": rows}
        reason = airbench_compare.cannot_run()
        if reason is not None:
            out["airbench94"] = {"ran": False, "reason": reason}
        elif budget.left() < 0:
            out["airbench94"] = {"ran": False, "reason": "time budget spent"}
        else:
            ab_rows = airbench_compare.run_airbench94(cifar, Path(work) / "airbench", seeds=seeds)
            out["airbench94"] = {"ran": True, "rows": ab_rows}
            for row in ab_rows:
                log(f"airbench94 seed {row['seed']}: {row['test_accuracy']:.2%} in {row['seconds']:.2f} s")
        ours = [r["seconds"] for r in rows if "seconds" in r]
        theirs = [r["seconds"] for r in out["airbench94"].get("rows", [])]
        if ours and theirs:
            out["time_ratio_ours_to_airbench94"] = (sum(ours) / len(ours)) / (sum(theirs) / len(theirs))
            out["goal_within_2x"] = out["time_ratio_ours_to_airbench94"] <= 2
            log(f"lib.fast / airbench94 time: {out['time_ratio_ours_to_airbench94']:.2f}")
    return out


def part_two_gpus(args, log) -> dict:
    count = torch.cuda.device_count()
    if count < 2:
        return {"ran": False, "reason": f"this machine has {count} GPU; the two-process check needs two"}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "lib.distributed", "--device", "cuda"], capture_output=True, text=True, env=env,
                          cwd=HERE.parent, timeout=300)
    log(done.stdout)
    return {"ran": True, "returncode": done.returncode, "stdout": done.stdout[-4000:], "stderr": done.stderr[-2000:],
            "seconds": time.perf_counter() - started}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--cifar10", type=Path, default=None, help="CIFAR-10 JPEG archive or folder (part 2)")
    parser.add_argument("--airbench-path", type=Path, default=None, help="folder holding the airbench package")
    parser.add_argument("--budget-s", type=float, default=480, help="stop starting new measurements after this")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per throughput measurement")
    parser.add_argument("--seeds", type=int, default=3, help="runs of each CIFAR-10 recipe")
    parser.add_argument("--compile-models", default="fast_net,small_resnet,resnet50")
    parser.add_argument("--parts", default="throughput,recipes,two_gpus")
    parser.add_argument("--device", default="cuda", help="cpu only to rehearse the script on a machine without a GPU")
    parser.add_argument("--epochs", type=float, default=None, help="override the recipe's epochs (rehearsals only)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU here; this check is for a GPU machine (benchmarks/README.md)", file=sys.stderr)
        return 2
    if args.cifar10 is not None and not args.cifar10.exists():
        print(f"error: --cifar10 {args.cifar10} does not exist; pass the JPEG archive or folder", file=sys.stderr)
        return 2
    if args.airbench_path is not None:
        if not (args.airbench_path / "airbench" / "__init__.py").is_file():
            print(f"error: {args.airbench_path} holds no airbench package (airbench/__init__.py)", file=sys.stderr)
            return 2
        sys.path.insert(0, str(args.airbench_path))
    torch.backends.cudnn.benchmark = True
    from lib import results

    budget = Budget(args.budget_s)
    record = {"format": "imagenet-course-gpu-check/1", "machine": {**results.provenance(args.device),
                                                                   "gpu_count": torch.cuda.device_count()},
              "command": "python3 benchmarks/gpu_check.py " + " ".join(argv if argv is not None else sys.argv[1:])}

    def log(line):
        print(line, flush=True)

    def save():
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")

    parts = args.parts.split(",")
    if "throughput" in parts:
        record["throughput"] = part_throughput(args, budget, log)
        save()
    if "recipes" in parts:
        record["recipes"] = (part_recipes(args, budget, log) if args.cifar10 is not None
                             else {"ran": False, "reason": "no --cifar10 given"})
        save()
    if "two_gpus" in parts:
        record["two_gpus"] = part_two_gpus(args, log)
    record["seconds"] = time.perf_counter() - budget.start
    save()
    log(f"written to {args.out} after {record['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
