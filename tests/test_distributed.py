"""lib.distributed: torchrun's environment, shards, per-process seeds, reductions, the linear
scaling rule, and real two-process runs (gloo, CPU) under torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lib import checkpoint, data, distributed, models, seeds, train
from lib.distributed import Context, LaunchError
from lib.seeds import Stream

ROOT = Path(__file__).resolve().parents[1]
FULL_ENV = {"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "LOCAL_RANK": "1"}


def test_no_variables_means_one_process():
    context = distributed.from_environment({})
    assert (context.rank, context.world_size, context.is_main, context.distributed) == (0, 1, True, False)


def test_full_environment_is_read():
    context = distributed.from_environment(FULL_ENV)
    assert (context.rank, context.world_size, context.local_rank, context.is_main) == (1, 2, 1, False)


@pytest.mark.parametrize("drop", ["WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"])
def test_missing_rendezvous_variable_is_named(drop):
    env = {k: v for k, v in FULL_ENV.items() if k != drop}
    with pytest.raises(LaunchError, match=drop) as error:
        distributed.from_environment(env)
    assert "torchrun" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("change, fragment", [({"RANK": "2"}, "outside 0..1"), ({"WORLD_SIZE": "two"}, "whole number"),
                                              ({"MASTER_PORT": "70000"}, "port"), ({"LOCAL_RANK": "5"}, "LOCAL_RANK")])
def test_inconsistent_environment_is_refused(change, fragment):
    with pytest.raises(LaunchError, match=fragment):
        distributed.from_environment({**FULL_ENV, **change})


def test_cpu_means_gloo():
    assert distributed.choose_backend(torch.device("cpu")) == "gloo"
    assert distributed.choose_device(Context(), "cpu") == torch.device("cpu")


def test_single_process_init_joins_nothing(monkeypatch):
    for name in distributed.RENDEZVOUS:
        monkeypatch.delenv(name, raising=False)
    context, device = distributed.init("cpu")
    assert not context.distributed and device.type == "cpu" and not torch.distributed.is_initialized()


@pytest.mark.parametrize("n, world", [(10, 2), (11, 2), (11, 3), (7, 4)])
def test_training_shards_are_equal_sized_and_cover_everything(n, world):
    shards = [distributed.shard_indices(n, r, world, seed=5, epoch=2) for r in range(world)]
    assert len({len(s) for s in shards}) == 1
    assert set(torch.cat(shards).tolist()) == set(range(n))
    assert len(shards[0]) * world - n < world  # at most world - 1 repeated


@pytest.mark.parametrize("n, world", [(11, 2), (11, 3), (7, 4)])
def test_evaluation_shards_read_each_example_once(n, world):
    shards = [distributed.shard_indices(n, r, world, shuffle=False, pad=False) for r in range(world)]
    assert sorted(torch.cat(shards).tolist()) == list(range(n))


def test_one_process_reads_the_single_process_order():
    expected = torch.randperm(50, generator=seeds.generator(3, 4, Stream.SHUFFLE))
    assert torch.equal(distributed.shard_indices(50, 0, 1, seed=3, epoch=4), expected)


def test_local_batches_make_up_the_single_process_batch():
    n, world, per_process = 64, 4, 5
    order = distributed.shard_indices(n, 0, 1, seed=1, epoch=0)
    shards = [distributed.shard_indices(n, r, world, seed=1, epoch=0) for r in range(world)]
    for k in range(3):
        union = sorted(torch.cat([s[k * per_process:(k + 1) * per_process] for s in shards]).tolist())
        assert union == sorted(order[k * per_process * world:(k + 1) * per_process * world].tolist())


def test_epochs_reshuffle_and_sampler_follows_the_epoch():
    sampler = distributed.ShardSampler(20, Context(rank=1, world_size=2), seed=0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first and len(sampler) == len(first) == 10
    assert first == distributed.shard_indices(20, 1, 2, seed=0, epoch=0).tolist()


def test_rank_seeds_differ_are_reproducible_and_leave_one_process_alone():
    assert distributed.rank_seed(7, 0, 1) == 7
    two = [distributed.rank_seed(7, r, 2) for r in range(2)]
    assert two[0] != two[1] and two == [distributed.rank_seed(7, r, 2) for r in range(2)]


def test_reductions_are_identities_alone():
    assert distributed.all_reduce_sum({"loss": torch.tensor(2.5), "seen": 4}) == {"loss": 2.5, "seen": 4.0}
    assert distributed.broadcast({"a": 1}) == {"a": 1}


def test_linear_scaling_rule_of_goyal_et_al():
    rule = distributed.LinearScaling(base_lr=0.1, base_batch=256, batch=8192, warmup_steps=100)
    assert rule.k == 32 and rule.lr == pytest.approx(3.2)
    assert rule(0) == pytest.approx(1 / 32)  # starts at the base rate: 0.1
    assert rule(50) == pytest.approx(1 / 32 + (1 - 1 / 32) / 2)
    assert rule(100) == rule(1000) == 1.0
    assert distributed.scaled_lr(0.1, 1024) == pytest.approx(0.4)
    assert distributed.LinearScaling(0.1, 256, 128, warmup_steps=10)(0) == 1.0  # smaller batch: no warm-up


def test_checkpoint_from_another_world_size_is_refused():
    distributed.check_resume(2, Context(rank=0, world_size=2), "ckpt/last.pt")
    distributed.check_resume(None, Context(), "ckpt/last.pt")
    with pytest.raises(LaunchError, match="written by a run with 4 processes but this run has 2") as error:
        distributed.check_resume(4, Context(rank=1, world_size=2), "ckpt/last.pt")
    assert "\n" not in str(error.value)


def _torchrun(args, tmp_path, **kwargs):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for name in distributed.RENDEZVOUS + ("LOCAL_RANK",):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, **kwargs)


def test_two_gloo_processes_under_torchrun(tmp_path):
    done = _torchrun([str(ROOT / "tests" / "distributed_worker.py"), str(tmp_path)], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    reports = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["rank"] for r in reports] == [0, 1] and {r["backend"] for r in reports} == {"gloo"}
    for report in reports:
        assert report["sums"] == {"value": 3.0, "count": 2.0}
        assert report["broadcast"] == {"from": 0}
        assert report["max_grad_difference"] < 1e-6
        assert report["union_of_local_batches"] == report["global_batch"]
    for r, report in enumerate(reports):  # each process computed the shard it would read alone
        assert report["shard"] == distributed.shard_indices(11, r, 2, seed=3, epoch=1).tolist()
    assert set(reports[0]["shard"]) | set(reports[1]["shard"]) == set(range(11))
    assert reports[0]["rank_seed"] != reports[1]["rank_seed"]
    assert done.stdout.count("MAIN-ONLY LINE") == 1


def test_launch_check_under_torchrun(tmp_path):
    done = _torchrun(["-m", "lib.distributed", "--device", "cpu"], tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 processes, backend gloo" in done.stdout and done.stdout.count("rank ") == 2


def test_bad_launch_ends_with_one_line():
    env = {k: v for k, v in os.environ.items() if k not in distributed.RENDEZVOUS}
    done = subprocess.run([sys.executable, "-m", "lib.distributed"], cwd=ROOT, capture_output=True, text=True,
                          env={**env, "RANK": "0", "PYTHONPATH": str(ROOT)}, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "WORLD_SIZE" in done.stderr and "torchrun" in done.stderr


# ---------------------------------------------------------------------------------------------
# The sharded loaders, the reductions and the checks that lib.train uses (in one process: a
# loader only needs to know its rank)


@pytest.fixture(scope="module")
def small():
    return data.load("shapes", n_train=70, n_val=13, n_test=10, seed=2)


def _loader(dataset, rank, world=2, split="train", **options):
    options = {"train": True, "augment": True, "seed": 4, **options} if split == "train" else options
    return distributed.loader(dataset, split, 8, "cpu", Context(rank=rank, world_size=world), **options)


def test_one_process_gets_lib_data_loader_unchanged(small):
    mine = distributed.loader(small, "train", 8, "cpu", Context(), train=True, augment=True, seed=4)
    theirs = data.loader(small, "train", 8, "cpu", train=True, augment=True, seed=4)
    assert type(mine) is type(theirs)
    for (x, y), (u, v) in zip(mine, theirs):
        assert torch.equal(x, u) and torch.equal(y, v)


def test_the_processes_batches_make_up_the_global_batch(small):
    """Without augmentation, two processes' k-th batches of 8 interleave into the k-th batch of 16
    that one process reads: the same global batches, as DistributedDataParallel needs."""
    one = distributed.loader(small, "train", 16, "cpu", Context(), train=True, seed=4)
    one.set_epoch(3)
    ranks = [_loader(small, r, augment=False) for r in range(2)]
    for loader in ranks:
        loader.set_epoch(3)
    assert len(ranks[0]) == len(ranks[1]) == len(one) == 4  # 70 images: 35 each, 4 full batches of 8
    for (x, y), (x0, y0), (x1, y1) in zip(one, *ranks):
        assert torch.equal(x, torch.stack([x0, x1], 1).flatten(0, 1))
        assert torch.equal(y, torch.stack([y0, y1], 1).flatten())


def test_each_process_draws_its_own_reproducible_augmentation(small):
    def first_batch(rank):
        loader = _loader(small, rank)
        loader.set_epoch(1)
        return next(iter(loader))[0]

    plain = [_loader(small, r, augment=False) for r in range(2)]
    for loader in plain:
        loader.set_epoch(1)
    assert torch.equal(first_batch(0), first_batch(0))  # the same in every rerun
    crops = [first_batch(r) for r in range(2)]
    assert not torch.equal(crops[0], next(iter(plain[0]))[0])  # augmented
    draws = [_loader(small, r)._augmentation() for r in range(2)]
    assert not torch.equal(draws[0][0], draws[1][0])  # the two processes' crops differ


def test_evaluation_shards_read_every_image_once(small):
    shards = [_loader(small, r, split="val") for r in range(2)]
    assert [s.images for s in shards] == [7, 6]
    labels = [torch.cat([y for _, y in s]) for s in shards]
    assert torch.equal(torch.stack([labels[0][:6], labels[1]], 1).flatten(), small.val.labels[:12])
    assert labels[0][6] == small.val.labels[12]


def test_streamed_shards_equal_in_memory_shards(small, tmp_path):
    data.write_folder(small, tmp_path)
    memory = data.load("folder", tmp_path, in_memory=True, seed=2)
    disk = data.load("folder", tmp_path, in_memory=False, seed=2)
    assert not disk.in_memory
    for rank in range(2):
        a = _loader(memory, rank)
        b = distributed.loader(disk, "train", 8, "cpu", Context(rank=rank, world_size=2), train=True, augment=True,
                               seed=4, num_workers=0)
        assert type(b).__name__ == "ShardedStreamLoader" and len(a) == len(b)
        for loader in (a, b):
            loader.set_epoch(2)
        for (x, y), (u, v) in zip(a, b):
            assert torch.equal(y, v) and torch.allclose(x, u)


def test_reduce_means_alone_and_the_error_reporter():
    assert distributed.reduce_means({"loss": 0.5, "acc": 0.25}, 8) == ({"loss": 0.5, "acc": 0.25}, 8.0)
    assert distributed.reports_errors({})  # one process
    assert distributed.reports_errors(FULL_ENV | {"LOCAL_RANK": "0"})  # first process of a machine
    assert not distributed.reports_errors(FULL_ENV)  # LOCAL_RANK 1: its machine's first process speaks
    assert distributed.reports_errors({"RANK": "1"})  # a broken launch: every process says so


def test_learning_rate_is_scaled_only_on_request():
    assert distributed.process_lr(0.01, 32, 4, scale=False) == 0.01
    assert distributed.process_lr(0.01, 32, 4, scale=True) == pytest.approx(0.04)
    assert distributed.process_lr(0.01, 32, 1, scale=True) == 0.01


def test_prepare_refuses_a_checkpoint_of_another_world_size(tmp_path, monkeypatch):
    for name in distributed.RENDEZVOUS + ("LOCAL_RANK",):
        monkeypatch.delenv(name, raising=False)
    tiny = data.load("shapes", n_train=64, n_val=0, n_test=8, seed=1)
    train.fit(models.build("seed_cnn"), tiny, epochs=2, batch_size=32, device="cpu", checkpoint_dir=tmp_path,
              stop_after=1, progress=False, log=lambda *a: None)
    saved = checkpoint.load(tmp_path / "last.pt")
    assert saved["world_size"] == 1
    assert train.prepare(epochs=2, batch_size=32, device="cpu", checkpoint_dir=tmp_path, resume=True).saved
    checkpoint.save(tmp_path / "last.pt", {**{k: v for k, v in saved.items() if k != "format"}, "world_size": 2})
    with pytest.raises(LaunchError, match="written by a run with 2 processes but this run has 1"):
        train.prepare(epochs=2, batch_size=32, device="cpu", checkpoint_dir=tmp_path, resume=True)
    checkpoint.save(tmp_path / "last.pt", {k: v for k, v in saved.items() if k != "format"})
    with pytest.raises(checkpoint.CheckpointError, match=r"scale_lr False -> True"):
        train.prepare(epochs=2, batch_size=32, device="cpu", checkpoint_dir=tmp_path, resume=True, scale_lr=True)
