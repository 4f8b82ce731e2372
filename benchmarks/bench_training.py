"""Speed benchmarks of the course's machinery, printed side by side in one run.

    python benchmarks/bench_training.py [--device auto] [--epochs 2] [--repeats 3] [--batch-sizes 32 128]
                                        [--threads N] [--dataset shapes|cifar10|folder --data-root DIR]

1. dataset generation: images per second for lib.shapes on one CPU core (target: 10,000 in < 10 s);
2. fit against a bare hand-written PyTorch loop doing the same work (same model, data, optimizer,
   batch size, shuffling, normalisation and, when on, the same crops and flips), at each batch size,
   without and with augmentation: training images per second and CPU time per image (targets: fit
   >= 0.9 of the bare loop at every batch size; augmentation costs fit at most 10%);
3. where a batch's time goes: CPU time of each piece of a step (taking the batch, crop and flip,
   normalising, the training step, fit's extras), beside the alternatives measured against them;
4. the on-device loader against torch's DataLoader: one epoch of the same data with the same random
   crop and flip (target: >= 3x);
5. what the generated data asks of a model: logistic regression on raw pixels against the article's CNN.

Runs alternate between the contenders and the median of `--repeats` is reported, so that a busy
machine slows both alike. CPU time (process time) is reported beside wall time: on a machine shared
with other jobs it is the steadier measure of the work done, most of all with `--threads 1`.
Results are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from lib import data, metrics, models, results, shapes, train
from lib.seeds import Stream, generator

LR = 2e-3


def bench_generation(n: int = 10_000) -> dict:
    with threadpool_limits(1):
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        started = time.perf_counter()
        shapes.generate(n, "train", seed=0)
        seconds = time.perf_counter() - started
        torch.set_num_threads(torch_threads)
    return {"images": n, "seconds": seconds, "images_per_second": n / seconds}


class Clock:
    """Wall time and CPU time (of this process, all threads) of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def bare_loop(ds: data.Dataset, device: torch.device, epochs: int, batch_size: int, augment: bool) -> dict:
    """The plainest correct training loop doing fit's work on data already on the device: shuffle,
    take whole batches, (crop and flip,) normalise, forward, loss, backward, AdamW step."""
    model = models.for_dataset("seed_cnn", ds, seed=0).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    images, labels = ds.train.images.to(device), ds.train.labels.to(device)
    mean = torch.tensor(ds.mean, device=device).view(1, -1, 1, 1) * 255
    std = torch.tensor(ds.std, device=device).view(1, -1, 1, 1) * 255
    n = len(labels) // batch_size * batch_size
    with Clock() as clock:
        for epoch in range(epochs):
            order = torch.randperm(len(labels), generator=generator(0, epoch, Stream.SHUFFLE)).to(device)
            crops = generator(0, epoch, Stream.AUGMENT)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                x = images[idx]
                if augment:
                    x = data.augment_batch(x, crops)
                x = (x.float() - mean) / std
                loss = loss_fn(model(x), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
    return {"images": n * epochs, "wall": clock.wall, "cpu": clock.cpu}


def fit_run(ds, device, epochs, batch_size, augment) -> dict:
    """fit on the same data (without a validation split, so that it does the bare loop's work)."""
    model = models.for_dataset("seed_cnn", ds, seed=0)
    with Clock() as clock:
        train.fit(model, ds, epochs=epochs, batch_size=batch_size, lr=LR, augment=augment, device=str(device),
                  amp=False, channels_last=False, progress=False, log=lambda _: None)
    return {"images": len(ds.train) // batch_size * batch_size * epochs, "wall": clock.wall, "cpu": clock.cpu}


def median_rates(rows: list[dict]) -> dict:
    return {"images_per_second": statistics.median(r["images"] / r["wall"] for r in rows),
            "cpu_ms_per_image": statistics.median(1000 * r["cpu"] / r["images"] for r in rows)}


def compare(ds, device, epochs, batch_size, repeats) -> dict:
    """fit and the bare loop, without and with augmentation, alternating; medians of `repeats`."""
    runs = {(who, aug): [] for who in ("bare", "fit") for aug in (False, True)}
    for _ in range(repeats):
        for aug in (False, True):
            runs["bare", aug].append(bare_loop(ds, device, epochs, batch_size, aug))
            runs["fit", aug].append(fit_run(ds, device, epochs, batch_size, aug))
    return {key: median_rates(rows) for key, rows in runs.items()}


def _per_call_us(work, calls: int, repeats: int) -> float:
    """Median CPU microseconds per call of `work` (process time, after a warm-up)."""
    for _ in range(5):
        work()
    times = []
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(calls):
            work()
        times.append(1e6 * (time.process_time() - started) / calls)
    return statistics.median(times)


def _pad_and_gather(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The same crops and flips done the straightforward way (lib.data did it so before): pad the
    batch as floats, gather with 4-d advanced indexing, flip with torch.where."""
    n, c, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    padded = torch.nn.functional.pad(x.float(), (pad, pad, pad, pad), mode="reflect")
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]
    out = padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols].to(x.dtype)
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def where_time_goes(ds, batch_size: int, repeats: int) -> dict:
    """CPU microseconds per batch (on the CPU) of each piece of fit's step, beside the alternatives
    that were measured against them: taking the batch, crop and flip, normalising, the training step
    itself, and fit's extras (the learning-rate schedule, the loss and accuracy sums)."""
    from torchvision.transforms.v2 import functional as TF

    images, labels = ds.train.images, ds.train.labels
    idx = torch.randperm(len(labels))[:batch_size]
    x = images.index_select(0, idx)
    crop_flip = data.CropFlip(ds.image_size, ds.image_size)
    rows, cols = crop_flip.draw(batch_size, torch.Generator().manual_seed(0))
    normalize = data.Normalize(ds.mean, ds.std, "cpu")
    mean = torch.tensor(ds.mean).view(1, -1, 1, 1) * 255
    std = torch.tensor(ds.std).view(1, -1, 1, 1) * 255
    model = models.for_dataset("seed_cnn", ds, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, train.LearningRateShape("linear", 10**9, 0.2))
    loss_fn = nn.CrossEntropyLoss()
    xf, y = normalize(x), labels.index_select(0, idx)
    sums = [torch.zeros(()), torch.zeros((), dtype=torch.long)]
    scores, loss = model(xf), torch.ones(())

    def step():
        loss = loss_fn(model(xf), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def extras():
        scheduler.step()
        with torch.no_grad():
            sums[0].add_(loss, alpha=batch_size)
            sums[1].add_((scores.argmax(1) == y).sum())

    generator = torch.Generator().manual_seed(1)
    calls = max(20, 4000 // batch_size)
    return {
        "batch by index_select (lib)": _per_call_us(lambda: images.index_select(0, idx), calls, repeats),
        "batch by images[idx]": _per_call_us(lambda: images[idx], calls, repeats),
        "crop+flip, one gather (lib)": _per_call_us(lambda: crop_flip.apply(x, rows, cols), calls, repeats),
        "crop+flip, pad then 4-d index": _per_call_us(lambda: _pad_and_gather(x, generator), calls, repeats),
        "normalise in place (lib)": _per_call_us(lambda: normalize(x), calls, repeats),
        "normalise (x.float() - m) / s": _per_call_us(lambda: (x.float() - mean) / std, calls, repeats),
        "normalise, torchvision v2": _per_call_us(
            lambda: TF.normalize(TF.to_dtype(x, torch.float32, scale=True), list(ds.mean), list(ds.std)), calls,
            repeats),
        "training step": _per_call_us(step, max(5, calls // 10), repeats),
        "fit's extras (schedule, sums)": _per_call_us(extras, calls, repeats),
    }


def loader_speed(ds, device, batch_size: int) -> tuple[float, float]:
    """One epoch of crops and flips: lib's on-device loader against a DataLoader; images/s of each."""
    from torchvision.transforms import v2

    device_loader = data.loader(ds, "train", batch_size, device, train=True, augment=True)
    started = time.perf_counter()
    for _batch in device_loader:
        pass
    if device.type == "cuda":
        torch.cuda.synchronize()
    device_rate = len(ds.train) / (time.perf_counter() - started)

    transform = v2.Compose([v2.RandomCrop(ds.image_size, padding=4, padding_mode="reflect"),
                            v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize(list(ds.mean), list(ds.std))])

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds.train)

        def __getitem__(self, i):
            return transform(ds.train.images[i]), ds.train.labels[i]

    workers = min(2, torch.get_num_threads())
    loader = torch.utils.data.DataLoader(Images(), batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=device.type == "cuda")
    started = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return device_rate, len(ds.train) / (time.perf_counter() - started)


def baselines(ds) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler()
    x_train = scaler.fit_transform(ds.train.images.flatten(1).numpy().astype(np.float32))
    x_test = scaler.transform(ds.test.images.flatten(1).numpy().astype(np.float32))
    started = time.perf_counter()
    clf = LogisticRegression(max_iter=300, C=0.01).fit(x_train, ds.train.labels.numpy())
    logistic = {"accuracy": float((clf.predict(x_test) == ds.test.labels.numpy()).mean()),
                "seconds": time.perf_counter() - started}
    model = models.for_dataset("seed_cnn", ds, seed=0)
    result = train.fit(model, ds, epochs=15, progress=False, log=lambda _: None)
    scores, labels = train.predict(model, ds, "test")
    cnn = {"accuracy": metrics.accuracy(scores, labels), "seconds": result.seconds}
    return {"logistic_regression": logistic, "seed_cnn_15_epochs": cnn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--n-train", type=int, default=10_000, help="generated training images (shapes)")
    parser.add_argument("--dataset", default="shapes", help="shapes, or cifar10/folder with --data-root (section 2-3)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    parser.add_argument("--sections", default="12345", help="which sections to run, e.g. 23")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = train.pick_device(args.device)
    print(f"machine: {platform.platform()}, {torch.get_num_threads()} torch threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}")
    results.provenance()  # imports torchvision now, not inside the first timed fit

    if "1" in args.sections:
        generation = bench_generation()
        print(f"\n1. generation: {generation['images']:,} images of 32x32 in {generation['seconds']:.2f} s on one "
              f"core = {generation['images_per_second']:,.0f} images/s (target: under 10 s)")

    if args.dataset == "shapes":
        ds = data.load("shapes", n_train=args.n_train, n_val=0, n_test=2000, seed=0)
    else:
        ds = data.load(args.dataset, args.data_root, val_fraction=0)
    print(f"\ndata: {ds}")
    if "2" in args.sections:
        fit_run(ds, device, 1, max(args.batch_sizes), True)  # warm-up: first-call costs out of the timings
        print(f"\n2. training, seed_cnn, {args.epochs} epochs, median of {args.repeats}: images/s (CPU ms per "
              "image); fit / bare loop by wall time (by CPU time)")
        for batch_size in args.batch_sizes:
            rates = compare(ds, device, args.epochs, batch_size, args.repeats)
            for aug in (False, True):
                fit, bare = rates["fit", aug], rates["bare", aug]
                print(f"   batch {batch_size:>4}, {'with' if aug else 'no':>4} augmentation: fit "
                      f"{fit['images_per_second']:>6,.0f} ({fit['cpu_ms_per_image']:.3f})   bare loop "
                      f"{bare['images_per_second']:>6,.0f} ({bare['cpu_ms_per_image']:.3f})   ratio "
                      f"{fit['images_per_second'] / bare['images_per_second']:.3f} "
                      f"({bare['cpu_ms_per_image'] / fit['cpu_ms_per_image']:.3f})  (target >= 0.9)")
            plain, augmented = rates["fit", False], rates["fit", True]
            print(f"   batch {batch_size:>4}: augmentation costs fit "
                  f"{1 - augmented['images_per_second'] / plain['images_per_second']:.1%} of its speed "
                  f"({augmented['cpu_ms_per_image'] / plain['cpu_ms_per_image'] - 1:.1%} more CPU time) "
                  "(target <= 10%)")

    if "3" in args.sections:
        print(f"\n3. CPU microseconds per batch, one thread on the CPU, median of {args.repeats}:")
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # CPU time of each piece itself, without waiting threads
        parts = {batch_size: where_time_goes(ds, batch_size, args.repeats) for batch_size in args.batch_sizes}
        torch.set_num_threads(threads)
        print(f"   {'':<32}" + "".join(f"{f'batch {b}':>12}" for b in parts))
        for name in parts[args.batch_sizes[0]]:
            print(f"   {name:<32}" + "".join(f"{parts[b][name]:>12,.0f}" for b in parts))

    if "4" in args.sections:
        device_rates, loader_rates = [], []
        for _ in range(args.repeats):
            d_rate, l_rate = loader_speed(ds, device, 128)
            device_rates.append(d_rate)
            loader_rates.append(l_rate)
        d_rate, l_rate = statistics.median(device_rates), statistics.median(loader_rates)
        print(f"\n4. one epoch of crops and flips, batch 128, images/s, median of {args.repeats}:\n   on-device "
              f"loader {d_rate:,.0f}   DataLoader {l_rate:,.0f}   ratio {d_rate / l_rate:.1f}x (target: >= 3x)")

    if "5" in args.sections and args.dataset == "shapes":
        result = baselines(data.load("shapes", n_train=10_000, seed=0))
        lr, cnn = result["logistic_regression"], result["seed_cnn_15_epochs"]
        print(f"\n5. test accuracy on the generated data (10,000 training images):\n   logistic regression on raw "
              f"pixels {lr['accuracy']:.1%} ({lr['seconds']:.0f} s)   article's CNN, 15 epochs "
              f"{cnn['accuracy']:.1%} ({cnn['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
