"""`torchrun -m lib.train`: real runs of two gloo processes on the CPU against one process, a
killed two-process run resumed, and bad launches ending with one line.

The runs share one module fixture (each launch costs seconds of imports): scikit-learn's digits
at 20x20 pixels, seed_cnn (no batch norm, no dropout) without augmentation, so that two processes
with 32 images each see exactly the global batches of one process with 64 (lib.distributed's
shard_indices) and DistributedDataParallel's averaged gradient is the one-process gradient up to
rounding. The two runs then differ only by the order of floating-point additions.
"""

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lib import checkpoint, cli, distributed

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ["--dataset", "digits", "--image-size", "20", "--model", "seed_cnn", "--epochs", "5", "--lr", "0.01",
          "--no-augment", "--device", "cpu", "--quiet"]
SAME_RUN = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")  # all but the timings
# Two runs that differ only by rounding order end within test-set noise of each other. Measured on
# one process (seeds 0, 1, 2) this recipe's validation accuracy after 5 epochs spreads over about
# 1 point (96.4-97.5%); the standard error of the difference of two accuracies near 97% on the
# 360 test images is sqrt(2 * 0.97 * 0.03 / 360) = 1.3 points. Three of those: 4 points.
TOLERANCE = 0.04


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in distributed.RENDEZVOUS + ("LOCAL_RANK",)}
    return {**env, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **extra}


def torchrun(*args, env=None):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "lib.train", *args], cwd=ROOT, env=env or _env(), capture_output=True, text=True,
                          timeout=600)


def python(*args, **variables):
    """`python -m lib.train ARGS` in this process (a launch costs seconds of imports), with
    `variables` added to the environment: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 in the workers
    try:
        with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            for name in distributed.RENDEZVOUS + ("LOCAL_RANK",):
                patch.delenv(name, raising=False)
            for name, value in variables.items():
                patch.setenv(name, value)
            code = cli.train_main(list(args))
    finally:
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process (batch 64); two processes (32 each) in one go; two processes stopped after
    epoch 2 of 5 (an interruption: the checkpoint is all that survives) and resumed."""
    tmp = tmp_path_factory.mktemp("torchrun")
    done = {"tmp": tmp}
    done["one"] = python(*DIGITS, "--batch-size", "64", "--checkpoint-dir", str(tmp / "one"),
                         "--metrics-out", str(tmp / "one.json"))
    (tmp / "two").mkdir()
    done["two"] = torchrun(*DIGITS, "--batch-size", "32", "--checkpoint-dir", str(tmp / "two" / "ckpt"),
                           "--metrics-out", str(tmp / "two" / "metrics.json"))
    done["stopped"] = torchrun(*DIGITS, "--batch-size", "32", "--checkpoint-dir", str(tmp / "killed"),
                               "--stop-after", "2", "--metrics-out", str(tmp / "resumed.json"))
    done["resumed"] = torchrun(*DIGITS, "--batch-size", "32", "--checkpoint-dir", str(tmp / "killed"), "--resume",
                               "--metrics-out", str(tmp / "resumed.json"))
    for name in ("one", "two", "stopped", "resumed"):
        assert done[name].returncode == 0, f"{name}: {done[name].stderr[-3000:]}"
    return done


def _metrics(path: Path) -> dict:
    return json.loads(path.read_text())


def test_two_processes_reach_the_one_process_accuracy(runs):
    one, two = _metrics(runs["tmp"] / "one.json"), _metrics(runs["tmp"] / "two" / "metrics.json")
    assert one["test_accuracy"] > 0.9 and two["test_accuracy"] > 0.9  # both learned the task
    assert abs(two["test_accuracy"] - one["test_accuracy"]) <= TOLERANCE
    # the same global batches and the averaged gradient: the same first epoch, up to rounding
    # (later epochs drift apart as rounding differences grow, hence the tolerance above)
    assert len(one["history"]) == len(two["history"]) == 5
    assert two["history"][0]["train_loss"] == pytest.approx(one["history"][0]["train_loss"], rel=1e-4)
    assert two["history"][0]["val_acc"] == one["history"][0]["val_acc"]
    assert [row["lr"] for row in two["history"]] == pytest.approx([row["lr"] for row in one["history"]])
    assert two["provenance"]["world_size"] == 2 and two["provenance"]["backend"] == "gloo"
    assert "2 processes (gloo), each 32 images per step: global batch 64" in runs["two"].stdout


def test_only_the_main_process_prints_and_writes(runs):
    folder = runs["tmp"] / "two"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")) == \
        ["ckpt", "ckpt/last.pt", "metrics.json"]  # one metrics file, one checkpoint, no leftovers
    saved = checkpoint.load(folder / "ckpt" / "last.pt")
    assert saved["world_size"] == 2 and saved["epoch"] == 5
    out = runs["two"].stdout
    assert out.count("epoch train_loss") == 1 and out.count("Dataset('digits'") == 1
    assert out.count("test accuracy") == 1 and out.count("metrics written to") == 1
    assert len([line for line in out.splitlines() if line.split()[:1] == ["3"]]) == 1  # one row per epoch


def test_a_killed_two_process_run_resumes_where_it_would_have_been(runs):
    assert "stopped after epoch 2 of 5" in runs["stopped"].stdout
    assert "resumed from" in runs["resumed"].stdout and "after epoch 2 of 5" in runs["resumed"].stdout
    straight, resumed = _metrics(runs["tmp"] / "two" / "metrics.json"), _metrics(runs["tmp"] / "resumed.json")
    assert [{k: row[k] for k in SAME_RUN} for row in resumed["history"]] == \
        [{k: row[k] for k in SAME_RUN} for row in straight["history"]]
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    assert resumed["f1_macro"] == straight["f1_macro"]


def _one_error_line(done, fragment):
    lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert done.returncode != 0 and len(lines) == 1 and fragment in lines[0], done.stderr[-3000:]
    assert "Traceback" not in done.stdout
    return lines[0]


def test_a_checkpoint_from_another_number_of_processes_is_refused(runs):
    one_ckpt, two_ckpt = runs["tmp"] / "one", runs["tmp"] / "two" / "ckpt"
    before = (one_ckpt / "last.pt").read_bytes(), (two_ckpt / "last.pt").read_bytes()
    alone = python(*DIGITS, "--batch-size", "64", "--checkpoint-dir", str(two_ckpt), "--resume")
    assert alone.returncode == 2 and alone.stderr.strip().count("\n") == 0
    assert "written by a run with 2 processes but this run has 1" in alone.stderr
    both = torchrun(*DIGITS, "--batch-size", "64", "--checkpoint-dir", str(one_ckpt), "--resume")
    _one_error_line(both, "written by a run with 1 process but this run has 2")
    assert before == ((one_ckpt / "last.pt").read_bytes(), (two_ckpt / "last.pt").read_bytes())  # untouched


def test_missing_rendezvous_variables_end_with_one_line(tmp_path):
    out = tmp_path / "m.json"  # RANK 1 alone: not the main process, yet it must say what is wrong
    done = python(*DIGITS, "--metrics-out", str(out), RANK="1")
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert "RANK is set but WORLD_SIZE, MASTER_ADDR, MASTER_PORT are not" in done.stderr
    assert "torchrun" in done.stderr and not out.exists() and done.stdout == ""
