"""Speed benchmarks of the course's machinery, printed side by side in one run.

    python benchmarks/bench_training.py [--device auto] [--epochs 3] [--repeats 3]

1. dataset generation: images per second for lib.shapes on one CPU core (target: 10,000 in < 10 s);
2. fit against a bare hand-written PyTorch loop: same model, data, optimizer and batch size, training
   images per second (target: fit >= 0.95 of the bare loop);
3. the on-device loader against torch's DataLoader: one epoch of the same data with the same random
   crop and flip (target: >= 3x);
4. what the generated data asks of a model: logistic regression on raw pixels against the article's CNN.

Runs alternate between the contenders and the median of `--repeats` is reported, so that a busy
machine slows both alike. Results are recorded in benchmarks/README.md.
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

from lib import data, metrics, models, shapes, train


def bench_generation(n: int = 10_000) -> dict:
    with threadpool_limits(1):
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        started = time.perf_counter()
        shapes.generate(n, "train", seed=0)
        seconds = time.perf_counter() - started
        torch.set_num_threads(torch_threads)
    return {"images": n, "seconds": seconds, "images_per_second": n / seconds}


def bare_loop(ds: data.Dataset, device: torch.device, epochs: int, batch_size: int, lr: float) -> float:
    """The plainest correct training loop on data already on the device; returns images/s."""
    model = models.build("seed_cnn", ds.num_classes, ds.channels, ds.image_size, seed=0).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    images = ds.train.images.to(device)
    labels = ds.train.labels.to(device)
    mean = torch.tensor(ds.mean, device=device).view(1, -1, 1, 1) * 255
    std = torch.tensor(ds.std, device=device).view(1, -1, 1, 1) * 255
    n = len(labels) // batch_size * batch_size
    seen, seconds = 0, 0.0
    for _ in range(epochs):
        started = time.perf_counter()
        order = torch.randperm(len(labels), device=device)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            x = (images[idx].float() - mean) / std
            loss = loss_fn(model(x), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - started
        seen += n
    return seen / seconds


def fit_speed(ds, device, epochs, batch_size, lr) -> float:
    model = models.build("seed_cnn", ds.num_classes, ds.channels, ds.image_size, seed=0)
    result = train.fit(model, ds, epochs=epochs, batch_size=batch_size, lr=lr, augment=False, device=str(device),
                       amp=False, channels_last=False, progress=False, log=lambda _: None)
    return result.images_per_second


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

    mean = [m for m in ds.mean]
    std = [s for s in ds.std]
    transform = v2.Compose([v2.RandomCrop(ds.image_size, padding=4, padding_mode="reflect"),
                            v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])

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
    model = models.build("seed_cnn", ds.num_classes, ds.channels, ds.image_size, seed=0)
    result = train.fit(model, ds, epochs=15, progress=False, log=lambda _: None)
    scores, labels = train.predict(model, ds, "test")
    cnn = {"accuracy": metrics.accuracy(scores, labels), "seconds": result.seconds}
    return {"logistic_regression": logistic, "seed_cnn_15_epochs": cnn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--skip-baselines", action="store_true")
    args = parser.parse_args()
    device = train.pick_device(args.device)
    print(f"machine: {platform.platform()}, {torch.get_num_threads()} torch threads, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}")

    generation = bench_generation()
    print(f"\n1. generation: {generation['images']:,} images of 32x32 in {generation['seconds']:.2f} s on one core "
          f"= {generation['images_per_second']:,.0f} images/s (target: under 10 s)")

    ds = data.load("shapes", n_train=10_000, seed=0)
    fit_rates, bare_rates = [], []
    for _ in range(args.repeats):  # alternate, so that background load hits both
        bare_rates.append(bare_loop(ds, device, args.epochs, args.batch_size, 2e-3))
        fit_rates.append(fit_speed(ds, device, args.epochs, args.batch_size, 2e-3))
    fit_rate, bare_rate = statistics.median(fit_rates), statistics.median(bare_rates)
    print(f"\n2. training images/s, seed_cnn, batch {args.batch_size}, {args.epochs} epochs, median of "
          f"{args.repeats}:\n   fit {fit_rate:,.0f}   bare loop {bare_rate:,.0f}   ratio {fit_rate / bare_rate:.3f} "
          "(target: >= 0.95)")

    device_rates, loader_rates = [], []
    for _ in range(args.repeats):
        d_rate, l_rate = loader_speed(ds, device, args.batch_size)
        device_rates.append(d_rate)
        loader_rates.append(l_rate)
    d_rate, l_rate = statistics.median(device_rates), statistics.median(loader_rates)
    print(f"\n3. one epoch of crops and flips, images/s, median of {args.repeats}:\n   on-device loader {d_rate:,.0f}"
          f"   DataLoader {l_rate:,.0f}   ratio {d_rate / l_rate:.1f}x (target: >= 3x)")

    if not args.skip_baselines:
        result = baselines(ds)
        lr, cnn = result["logistic_regression"], result["seed_cnn_15_epochs"]
        print(f"\n4. test accuracy on the generated data (10,000 training images):\n   logistic regression on raw "
              f"pixels {lr['accuracy']:.1%} ({lr['seconds']:.0f} s)   article's CNN, 15 epochs "
              f"{cnn['accuracy']:.1%} ({cnn['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
