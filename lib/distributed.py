"""Training on several processes with torchrun: who each process is, which images it reads, how
its random numbers are seeded, how metrics are combined, and the learning rate for a larger batch.

The page "Training on the full ImageNet" (chapter 5) explains it. `torchrun` starts one process
per GPU (or several on a CPU) and tells each its place through environment variables: RANK (0 to
WORLD_SIZE - 1), WORLD_SIZE, LOCAL_RANK (its index on its own machine), and MASTER_ADDR and
MASTER_PORT, where the processes meet (the rendezvous). `init` reads them, picks the backend (NCCL
between GPUs, gloo on CPUs) and joins the group; without them, it is a single process and nothing
changes. Check a launch with `torchrun --nproc_per_node=2 -m lib.distributed`.

In data-parallel training (PyTorch's DistributedDataParallel) every process holds a copy of the
model, trains on its own shard of each batch, and the gradients are averaged across processes
before every update, so all copies stay equal.

`lib.train.fit` (and so `torchrun --nproc_per_node=N -m lib.train ...`) follows this module: each
process reads its shard of every epoch (`loader`), draws its crops, flips and dropout from
`rank_seed`, trains through DistributedDataParallel (`wrap`), sums its losses and counts with the
others' (`reduce_means`), and takes the main process's batch-norm statistics before validating
(`sync_buffers`); the main process alone prints, writes the checkpoint (which records the number of
processes, `check_resume`) and writes the metrics file. `--batch-size` is per process, so the
global batch is N times larger; `--scale-lr` applies Goyal et al.'s linear scaling rule to it.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import socket
import sys
from dataclasses import dataclass, replace
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist

from lib import data as data_lib
from lib import seeds
from lib.seeds import Stream

# The variables torch.distributed's env:// rendezvous needs; torchrun sets them all.
RENDEZVOUS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
LAUNCH_HINT = "start the run with torchrun (e.g. torchrun --nproc_per_node=2 -m lib.train ...), which sets them all"


class LaunchError(RuntimeError):
    """A distributed launch that cannot work; the one-line message says what to do."""


@dataclass(frozen=True)
class Context:
    """This process's place in the run. A single process is rank 0 of 1, with no backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # "nccl" or "gloo" once the process group is joined
    launched: bool = False  # True when torchrun's variables are set (even for a single process)

    @property
    def is_main(self) -> bool:
        """True for the one process that prints, writes checkpoints and writes metrics (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


def _whole_number(env, name: str) -> int:
    value = env[name]
    try:
        return int(value)
    except ValueError:
        raise LaunchError(f"{name}={value!r} is not a whole number; {LAUNCH_HINT}") from None


def from_environment(env=None) -> Context:
    """The Context described by torchrun's environment variables (`env`: default os.environ).

    None of RENDEZVOUS set: a single process. Some but not all: LaunchError naming the missing ones.
    LOCAL_RANK defaults to RANK (one machine) when absent.
    """
    env = os.environ if env is None else env
    present = [name for name in RENDEZVOUS if name in env]
    if not present:
        return Context()
    missing = [name for name in RENDEZVOUS if name not in env]
    if missing:
        raise LaunchError(f"{', '.join(present)} {'is' if len(present) == 1 else 'are'} set but "
                          f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not; {LAUNCH_HINT}")
    rank, world = _whole_number(env, "RANK"), _whole_number(env, "WORLD_SIZE")
    port = _whole_number(env, "MASTER_PORT")
    local = _whole_number(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
    if world < 1:
        raise LaunchError(f"WORLD_SIZE must be at least 1, got {world}; {LAUNCH_HINT}")
    if not 0 <= rank < world:
        raise LaunchError(f"RANK {rank} is outside 0..{world - 1} (WORLD_SIZE {world}); {LAUNCH_HINT}")
    if not 0 <= local <= rank:
        raise LaunchError(f"LOCAL_RANK {local} must be between 0 and RANK {rank}; {LAUNCH_HINT}")
    if not 0 < port < 65536:
        raise LaunchError(f"MASTER_PORT {port} is not a port number (1..65535); {LAUNCH_HINT}")
    if not env["MASTER_ADDR"].strip():
        raise LaunchError(f"MASTER_ADDR is empty; {LAUNCH_HINT}")
    return Context(rank=rank, world_size=world, local_rank=local, launched=True)


def reports_errors(env=None) -> bool:
    """True in the process that prints a failure every process meets: a single process, the first
    process of each machine under torchrun (LOCAL_RANK 0), so that a bad run says it once per
    machine and a failure only one machine meets (a missing folder there) is still shown, and every
    process of a broken launch (its variables do not say which it is)."""
    try:
        return from_environment(env).local_rank == 0
    except LaunchError:
        return True


def choose_device(context: Context, device: str = "auto") -> torch.device:
    """cuda:LOCAL_RANK where a GPU is used (`device` "auto" with CUDA available, or "cuda"), else cpu."""
    if device not in ("auto", "cpu", "cuda"):
        raise LaunchError(f"unknown device {device!r} for a distributed run; choose auto, cpu or cuda")
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise LaunchError("device 'cuda' was asked for but this machine has no GPU; use --device cpu (gloo)")
    if device == "cpu" or not cuda:
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if context.local_rank >= count:
        raise LaunchError(f"LOCAL_RANK {context.local_rank} needs GPU {context.local_rank} but this machine has "
                          f"{count}; start at most {count} processes per machine (--nproc_per_node={count})")
    return torch.device("cuda", context.local_rank)


def choose_backend(device: torch.device) -> str:
    """NCCL between GPUs (where this PyTorch has it), gloo on CPUs."""
    return "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"


def join(context: Context, device: torch.device, timeout_s: float = 600) -> Context:
    """Join the process group of a launched run (torch's env:// rendezvous), with the backend for
    `device`; returns the context with its backend. Already joined: the group's backend. A single
    process (not launched) joins nothing."""
    if not context.launched:
        return context
    if dist.is_initialized():
        return replace(context, backend=dist.get_backend())
    backend = choose_backend(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend, init_method="env://", rank=context.rank,
                                world_size=context.world_size, timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise LaunchError(f"could not join the process group at {os.environ.get('MASTER_ADDR')}:"
                          f"{os.environ.get('MASTER_PORT')} ({first}); check that every machine reaches that "
                          "address and uses the same --nnodes, --nproc_per_node and --rdzv-endpoint") from None
    return replace(context, backend=backend)


def init(device: str = "auto", timeout_s: float = 600) -> tuple[Context, torch.device]:
    """Read torchrun's variables, choose the device and backend, and join the process group
    (torch's env:// rendezvous). A single process (no variables set) joins nothing.
    Returns (context, device)."""
    context = from_environment()
    chosen = choose_device(context, device)
    return join(context, chosen, timeout_s), chosen


def shutdown() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def launched(device: str = "auto", timeout_s: float = 600):
    """`with launched() as (context, device):` joins the group for the block and always leaves it."""
    try:
        yield init(device, timeout_s)
    finally:
        shutdown()


@contextlib.contextmanager
def joined(context: Context, device: torch.device, timeout_s: float = 600):
    """`with joined(context, device) as context:` joins the group of a launched run for the block
    and leaves it at the end, unless it was joined before the block (then its joiner leaves it)."""
    owner = context.launched and not dist.is_initialized()
    try:
        yield join(context, device, timeout_s)
    finally:
        if owner:
            shutdown()


# ---------------------------------------------------------------------------------------------
# Which images each process reads


def shard_indices(n: int, rank: int, world_size: int, *, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                  pad: bool = True) -> torch.Tensor:
    """The indices of n examples that process `rank` reads in `epoch`.

    Every process draws the same order (lib.seeds' SHUFFLE stream of (seed, epoch), the order a
    single process uses) and takes every world_size-th entry from position `rank`. Hence with a
    per-process batch b, the union of the processes' k-th batches is exactly positions
    [k*b*W, (k+1)*b*W) of the single-process order: W processes see the same global batches as
    one process with batch b*W. `pad` (for training) repeats the first entries so that every
    process gets the same number, as DistributedDataParallel needs; without it (for evaluation)
    each example is read exactly once and the shards may differ by one.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} must be in 0..{world_size - 1}")
    order = torch.randperm(n, generator=seeds.generator(seed, epoch, Stream.SHUFFLE)) if shuffle else torch.arange(n)
    if pad and n % world_size:
        extra = world_size - n % world_size
        order = torch.cat([order, order[torch.arange(extra) % max(n, 1)]])
    return order[rank::world_size]


class ShardSampler(torch.utils.data.Sampler):
    """A DataLoader sampler over this process's shard (`shard_indices`), for datasets streamed from
    disk; call `set_epoch(epoch)` before each epoch. The in-memory loader indexes its on-device
    tensor with `shard_indices` directly."""

    def __init__(self, n: int, context: Context, *, shuffle: bool = True, seed: int = 0, pad: bool = True):
        self.n, self.context, self.shuffle, self.seed, self.pad, self.epoch = n, context, shuffle, seed, pad, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(shard_indices(self.n, self.context.rank, self.context.world_size, shuffle=self.shuffle,
                                  seed=self.seed, epoch=self.epoch, pad=self.pad).tolist())

    def __len__(self) -> int:
        w = self.context.world_size
        return math.ceil(self.n / w) if self.pad else len(range(self.context.rank, self.n, w))


class _Shard:
    """What both sharded loaders add to lib.data's loaders: this process's positions of an epoch
    (`shard_indices`: the shared order, so the processes' batches make up the global batch), and
    crops and flips drawn from this process's own seed (`rank_seed`)."""

    def _shard_setup(self, context: Context, pad: bool) -> None:
        self.context, self.pad = context, pad
        self.augment_seed = rank_seed(self.seed, context.rank, context.world_size)

    @property
    def images(self) -> int:
        """Images this process reads per epoch (before dropping a last partial batch)."""
        n, world = len(self.split), self.context.world_size
        return math.ceil(n / world) if self.pad else len(range(self.context.rank, n, world))

    def __len__(self) -> int:
        return self.images // self.batch_size if self.drop_last else -(-self.images // self.batch_size)

    def _positions(self) -> torch.Tensor:
        return shard_indices(len(self.split), self.context.rank, self.context.world_size, shuffle=self.shuffle,
                             seed=self.seed, epoch=self.epoch, pad=self.pad)

    def _augmentation(self):
        if self.crop_flip is None:
            return None
        return self.crop_flip.draw(self.images, seeds.generator(self.augment_seed, self.epoch, Stream.AUGMENT))


class ShardedDeviceLoader(_Shard, data_lib.DeviceLoader):
    """lib.data.DeviceLoader reading only this process's shard of every epoch."""

    def __init__(self, split, batch_size: int, device, mean, std, *, context: Context, pad: bool, **options):
        super().__init__(split, batch_size, device, mean, std, **options)
        self._shard_setup(context, pad)

    def __iter__(self):
        images, labels = self.split.images, self.split.labels
        positions = self._positions().to(self.device)
        choices = self._augmentation()
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = positions[start:start + self.batch_size]
            yield self._finish(images.index_select(0, idx), choices, start), labels.index_select(0, idx)


class ShardedStreamLoader(_Shard, data_lib.StreamLoader):
    """lib.data.StreamLoader whose DataLoader reads only this process's shard (a ShardSampler)."""

    def __init__(self, split, batch_size: int, device, mean, std, *, context: Context, pad: bool, **options):
        super().__init__(split, batch_size, device, mean, std, **options)
        self._shard_setup(context, pad)

    def _reader(self):
        sampler = ShardSampler(len(self.split), self.context, shuffle=self.shuffle, seed=self.seed, pad=self.pad)
        sampler.set_epoch(self.epoch)
        return self._decoding(sampler=sampler)


def loader(data: data_lib.Dataset, split: str, batch_size: int, device, context: Context, *, train: bool = False,
           augment: bool = False, seed: int = 0, channels_last: bool = False, num_workers: int | None = None):
    """lib.data.loader for this process: in a run of one process exactly lib.data.loader; in a run
    of several, a loader over this process's shard (in-memory or streamed, as the data is).
    Training shards are padded to equal sizes and shuffled with the shared `seed` every epoch;
    evaluation shards read each image exactly once. `batch_size` is per process."""
    if context.world_size == 1:
        return data_lib.loader(data, split, batch_size, device, train=train, augment=augment, seed=seed,
                               channels_last=channels_last, num_workers=num_workers)
    part = getattr(data, split)
    share = math.ceil(len(part) / context.world_size)
    options = dict(shuffle=train, augment=augment, drop_last=train and share > batch_size, seed=seed,
                   channels_last=channels_last)
    if isinstance(part, data_lib.TensorSplit):
        return ShardedDeviceLoader(part, batch_size, device, data.mean, data.std, context=context, pad=train,
                                   **options)
    return ShardedStreamLoader(part, batch_size, device, data.mean, data.std, context=context, pad=train,
                               num_workers=num_workers, **options)


# ---------------------------------------------------------------------------------------------
# Random numbers per process


def rank_seed(seed: int, rank: int, world_size: int) -> int:
    """The seed of process `rank`'s augmentation and dropout: `seed` itself in a single process (so
    one-process runs do not change), otherwise a number mixed from (seed, rank, world_size): it
    differs between processes, so their crops and flips are independent, and is the same in every
    rerun. The shuffling order must use the shared `seed` (see `shard_indices`)."""
    if world_size == 1:
        return seed
    return int(np.random.SeedSequence([seed, rank, world_size]).generate_state(1, dtype=np.uint32)[0])


# ---------------------------------------------------------------------------------------------
# Metrics across processes


def all_reduce_sum(values: dict, device="cpu") -> dict[str, float]:
    """Sum each value (a number or a one-element tensor) over all processes, in one message;
    returns Python floats. In a single process it returns the values unchanged.

    Reduce sums and counts (loss x images, correct predictions, images seen), never per-process
    means: shards can differ in size, and the mean of means would weigh them wrongly."""
    names = list(values)
    packed = torch.tensor([float(values[k]) for k in names], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(packed, op=dist.ReduceOp.SUM)
    return dict(zip(names, packed.tolist()))


def reduce_means(means: dict, count: int, device="cpu") -> tuple[dict[str, float], float]:
    """Means over all processes' images, from each process's means over its own `count` images:
    (the means, the total count). A process with no images contributes nothing. In a single
    process the means come back unchanged."""
    if not (dist.is_available() and dist.is_initialized()):
        return {k: float(v) for k, v in means.items()}, float(count)
    sums = all_reduce_sum({**{k: float(v) * count if count else 0.0 for k, v in means.items()}, "count": count},
                          device)
    total = sums.pop("count")
    return {k: v / total if total else float("nan") for k, v in sums.items()}, total


def reduction_device(context: Context, device: torch.device):
    """Where tensors to be reduced must live: the GPU under NCCL, the CPU under gloo."""
    return device if context.backend == "nccl" else "cpu"


def sync_buffers(model: torch.nn.Module, src: int = 0) -> None:
    """Copy process `src`'s buffers (batch norm's running statistics) into every process. Within an
    epoch each process updates them from its own shard; after it, all evaluate and save the same
    model: the main process's."""
    if dist.is_available() and dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer.data, src=src)


def check_same_start(epoch: int, path, context: Context, device="cpu") -> None:
    """Raise LaunchError in every process unless all resume from the same epoch (`epoch`: 0 for a
    fresh start): a machine that cannot read the main process's checkpoint would start afresh."""
    if not context.distributed:
        return
    sums = all_reduce_sum({"epoch": epoch, "square": epoch * epoch}, device)
    if sums["square"] * context.world_size != sums["epoch"] ** 2:  # equal only when all are equal
        raise LaunchError(f"the processes found different checkpoints in {path} (this one: epoch {epoch}); "
                          "put the checkpoint folder where every machine reads the same files (a shared disk)")


def wrap(model: torch.nn.Module, context: Context, device: torch.device) -> torch.nn.Module:
    """The model in PyTorch's DistributedDataParallel, which averages the gradients across the
    processes during the backward pass (and copies the main process's weights to all at the
    start); the model itself when the group is not joined."""
    if not context.distributed:
        return model
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def broadcast(value, src: int = 0):
    """`value` as process `src` holds it, in every process (any picklable object); unchanged alone."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait until every process reaches this point (nothing to wait for in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def main_only(log, context: Context):
    """`log` in the main process, a function that prints nothing elsewhere."""
    return log if context.is_main else (lambda *args, **kwargs: None)


# ---------------------------------------------------------------------------------------------
# The learning rate of a larger batch (Goyal et al. 2017)


@dataclass(frozen=True)
class LinearScaling:
    """Goyal et al.'s (2017) rule for a global batch `batch` larger than the `base_batch` that
    `base_lr` was tuned for: multiply the learning rate by k = batch / base_batch, and reach it by
    a gradual warm-up, rising linearly from base_lr over `warmup_steps` (they used 5 epochs).
    `lr` is the scaled rate; calling the rule with a step gives the multiplier of `lr` at that
    step (for torch.optim.lr_scheduler.LambdaLR), to be combined with any later decay."""

    base_lr: float
    base_batch: int
    batch: int
    warmup_steps: int = 0

    def __post_init__(self):
        if self.base_lr <= 0 or self.base_batch < 1 or self.batch < 1 or self.warmup_steps < 0:
            raise ValueError("LinearScaling needs base_lr > 0, base_batch >= 1, batch >= 1, warmup_steps >= 0")

    @property
    def k(self) -> float:
        return self.batch / self.base_batch

    @property
    def lr(self) -> float:
        return self.base_lr * self.k

    def __call__(self, step: int) -> float:
        if self.k <= 1 or step >= self.warmup_steps:
            return 1.0
        return 1 / self.k + (1 - 1 / self.k) * step / self.warmup_steps


def scaled_lr(base_lr: float, batch: int, base_batch: int = 256) -> float:
    """The linear scaling rule alone: base_lr * batch / base_batch (Goyal et al. 2017: 0.1 for 256)."""
    return LinearScaling(base_lr, base_batch, batch).lr


def process_lr(lr: float, batch_size: int, world_size: int, scale: bool) -> float:
    """The learning rate of a run of `world_size` processes with `batch_size` images each: `lr`
    itself, or with `scale` the linear scaling rule's lr * world_size (`lr` tuned for one process's
    batch, the global batch being world_size times larger). The course's schedules already warm up
    from near zero over their first steps (TrainConfig.warmup), which is the gradual warm-up the
    rule needs."""
    return LinearScaling(lr, batch_size, batch_size * world_size).lr if scale else lr


# ---------------------------------------------------------------------------------------------
# Checkpoints of a distributed run


def check_resume(saved_world_size: int | None, context: Context, path) -> None:
    """Raise LaunchError unless a checkpoint written by `saved_world_size` processes (None: a
    checkpoint from before this was recorded, taken as 1) is resumed by as many: the shards, the
    per-process seeds and the steps per epoch all depend on the number of processes."""
    saved = 1 if saved_world_size is None else int(saved_world_size)
    if saved != context.world_size:
        raise LaunchError(f"{path} was written by a run with {saved} process{'es' if saved != 1 else ''} but this "
                          f"run has {context.world_size}; resume it with {saved} (torchrun --nnodes and "
                          "--nproc_per_node) or choose an empty checkpoint folder")


# ---------------------------------------------------------------------------------------------
# A launch check: torchrun --nproc_per_node=2 -m lib.distributed


def check_launch(device: str = "auto", log=print) -> dict:
    """Join the group, gather every process's rank, machine and device, check that an all-reduce
    adds up, and print one line per process from the main process. Returns what was gathered."""
    with launched(device, timeout_s=120) as (context, chosen):
        mine = {"rank": context.rank, "local_rank": context.local_rank, "host": socket.gethostname(),
                "device": str(chosen), "pid": os.getpid()}
        everyone = [mine]
        if context.distributed:
            everyone = [None] * context.world_size
            dist.all_gather_object(everyone, mine)
        total = all_reduce_sum({"ranks": context.rank}, "cpu" if context.backend != "nccl" else chosen)["ranks"]
        expected = context.world_size * (context.world_size - 1) / 2
        if total != expected:
            raise LaunchError(f"the all-reduce gave {total}, not {expected}: the processes do not agree; "
                              "check that all were started with the same --nnodes and --nproc_per_node")
        out = main_only(log, context)
        out(f"{context.world_size} process{'es' if context.world_size > 1 else ''}, backend "
            f"{context.backend or 'none (single process)'}; all-reduce of the ranks gave {total:g} as expected")
        for row in everyone:
            out(f"  rank {row['rank']} (local {row['local_rank']}) on {row['host']}, {row['device']}, pid {row['pid']}")
        return {"world_size": context.world_size, "backend": context.backend, "processes": everyone}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="torchrun --nproc_per_node=N -m lib.distributed",
                                     description="Check a distributed launch: every process joins, "
                                                 "the main process prints who is there.")
    parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu or cuda")
    args = parser.parse_args(argv)
    try:
        check_launch(args.device)
    except LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
