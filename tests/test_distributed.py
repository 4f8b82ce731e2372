"""lib.distributed: torchrun's environment, shards, per-process seeds, reductions, the linear
scaling rule, and real two-process runs (gloo, CPU) under torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lib import distributed, seeds
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
