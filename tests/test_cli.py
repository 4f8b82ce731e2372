"""The command line `python -m lib.train`: a real run, and every error case."""

import json
import subprocess
import sys

import pytest

from lib import train

SMALL = ["--n-train", "300", "--n-val", "60", "--n-test", "60", "--batch-size", "64", "--quiet"]
REQUIRED = {"dataset", "model", "epochs", "test_accuracy", "precision_weighted", "recall_weighted", "f1_weighted",
            "f1_macro", "images_per_second", "seconds", "device", "torch_version", "seed"}


def cli(*args):
    return subprocess.run([sys.executable, "-m", "lib.train", *args], capture_output=True, text=True, timeout=300)


def test_run_writes_metrics_and_resumes(tmp_path):
    out = tmp_path / "m.json"
    ckpt = tmp_path / "ckpt"
    first = cli("--epochs", "2", "--checkpoint-dir", str(ckpt), "--stop-after", "1", *SMALL)
    assert first.returncode == 0, first.stderr
    assert "stopped after epoch 1 of 2" in first.stdout and not out.exists()
    second = cli("--epochs", "2", "--checkpoint-dir", str(ckpt), "--resume", "--metrics-out", str(out), *SMALL)
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout
    payload = json.loads(out.read_text())
    assert REQUIRED <= set(payload)
    assert payload["dataset"] == "shapes" and payload["model"] == "seed_cnn" and payload["epochs"] == 2
    assert payload["recall_weighted"] == pytest.approx(payload["test_accuracy"])
    assert len(payload["history"]) == 2 and payload["provenance"]["torch_version"] == payload["torch_version"]
    # the same run in one go gives the same test metrics
    straight = tmp_path / "straight.json"
    assert cli("--epochs", "2", "--metrics-out", str(straight), *SMALL).returncode == 0
    assert json.loads(straight.read_text())["test_accuracy"] == payload["test_accuracy"]


@pytest.mark.parametrize("args, message", [
    (["--dataset", "mnist"], "unknown dataset 'mnist'; choose one of: shapes"),
    (["--model", "resnet9000"], "unknown model 'resnet9000'"),
    (["--epochs", "0"], "epochs must be a whole number of at least 1"),
    (["--dataset", "folder", "--data-root", "/no/such/folder"], "data root /no/such/folder does not exist"),
    (["--dataset", "cifar10", "--data-root", "."], "CIFAR-10 not found under"),
    (["--epochs", "three"], "invalid int value: 'three'"),
    (["--resume"], "--resume needs --checkpoint-dir"),
    (["--lr", "-0.1"], "lr must be a positive number"),
])
def test_bad_arguments_fail_with_one_line(args, message, tmp_path):
    out = tmp_path / "m.json"
    out.write_text("precious")
    result = cli(*args, "--metrics-out", str(out), *SMALL)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert out.read_text() == "precious"  # nothing overwritten


def test_damaged_checkpoint_fails_cleanly(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    result = cli("--checkpoint-dir", str(tmp_path), "--resume", *SMALL)
    assert result.returncode == 2 and "damaged or not a checkpoint" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "last.pt").read_bytes() == b"not a checkpoint"


def test_checkpoint_without_resume_is_refused(tmp_path):
    assert cli("--epochs", "2", "--checkpoint-dir", str(tmp_path), "--stop-after", "1", *SMALL).returncode == 0
    before = (tmp_path / "last.pt").read_bytes()
    result = cli("--epochs", "2", "--checkpoint-dir", str(tmp_path), *SMALL)
    assert result.returncode == 2 and "already holds a checkpoint" in result.stderr
    assert (tmp_path / "last.pt").read_bytes() == before


def test_parser_knows_every_documented_option():
    options = {a for action in train.build_parser()._actions for a in action.option_strings}
    documented = {"--dataset", "--model", "--epochs", "--batch-size", "--lr", "--seed", "--device", "--data-root",
                  "--checkpoint-dir", "--resume", "--metrics-out"}
    assert documented <= options
