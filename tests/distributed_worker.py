"""Run by tests/test_distributed.py under torchrun with two gloo processes on the CPU:
each process checks lib.distributed from the inside and writes what it saw to OUT/rank<r>.json."""

import json
import sys
from pathlib import Path

import torch
from torch import nn

from lib import distributed, seeds
from lib.seeds import Stream


def main(out: Path) -> None:
    torch.set_num_threads(1)
    context, device = distributed.init("cpu", timeout_s=120)
    rank, world = context.rank, context.world_size
    report = {"rank": rank, "world_size": world, "backend": context.backend, "device": str(device)}
    report["sums"] = distributed.all_reduce_sum({"value": rank + 1, "count": 1})
    report["broadcast"] = distributed.broadcast({"from": rank} if rank == 0 else None)
    report["shard"] = distributed.shard_indices(11, rank, world, seed=3, epoch=1).tolist()
    report["rank_seed"] = distributed.rank_seed(7, rank, world)

    # DistributedDataParallel on shards of a global batch of 8 (4 per process) computes the same
    # gradient as one process on the whole global batch.
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 12, generator=generator)
    y = torch.randint(0, 3, (16,), generator=generator)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 3))
    reference = nn.Sequential(nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 3))
    reference.load_state_dict(model.state_dict())
    ddp = nn.parallel.DistributedDataParallel(model)
    mine = distributed.shard_indices(16, rank, world, seed=0, epoch=0)[:4]
    nn.functional.cross_entropy(ddp(x[mine]), y[mine]).backward()
    everything = torch.randperm(16, generator=seeds.generator(0, 0, Stream.SHUFFLE))[:8]
    nn.functional.cross_entropy(reference(x[everything]), y[everything]).backward()
    report["max_grad_difference"] = max((a.grad - b.grad).abs().max().item()
                                        for a, b in zip(model.parameters(), reference.parameters()))
    report["global_batch"] = sorted(everything.tolist())
    gathered = [None] * world
    torch.distributed.all_gather_object(gathered, mine.tolist())
    report["union_of_local_batches"] = sorted(i for part in gathered for i in part)
    distributed.main_only(print, context)("MAIN-ONLY LINE")
    distributed.barrier()
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
