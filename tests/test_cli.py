"""The command line `python -m lib.train`: a real run, and every error case."""

import json
import subprocess
import sys

import pytest

from lib import cli

SMALL = ["--n-train", "300", "--n-val", "60", "--n-test", "60", "--batch-size", "64", "--quiet"]
REQUIRED = {"dataset", "model", "epochs", "test_accuracy", "precision_weighted", "recall_weighted", "f1_weighted",
            "f1_macro", "images_per_second", "seconds", "device", "torch_version", "seed"}


def cli_run(*args):
    return subprocess.run([sys.executable, "-m", "lib.train", *args], capture_output=True, text=True, timeout=600)


def test_run_writes_metrics_and_resumes(tmp_path):
    out = tmp_path / "m.json"
    ckpt = tmp_path / "ckpt"
    first = cli_run("--epochs", "2", "--checkpoint-dir", str(ckpt), "--stop-after", "1", *SMALL)
    assert first.returncode == 0, first.stderr
    assert "stopped after epoch 1 of 2" in first.stdout and not out.exists()
    second = cli_run("--epochs", "2", "--checkpoint-dir", str(ckpt), "--resume", "--metrics-out", str(out), *SMALL)
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout
    payload = json.loads(out.read_text())
    assert REQUIRED <= set(payload)
    assert payload["dataset"] == "shapes" and payload["model"] == "seed_cnn" and payload["epochs"] == 2
    assert payload["recall_weighted"] == pytest.approx(payload["test_accuracy"])
    assert len(payload["history"]) == 2 and payload["provenance"]["torch_version"] == payload["torch_version"]
    # the same run in one go gives the same test metrics
    straight = tmp_path / "straight.json"
    assert cli_run("--epochs", "2", "--metrics-out", str(straight), *SMALL).returncode == 0
    assert json.loads(straight.read_text())["test_accuracy"] == payload["test_accuracy"]


@pytest.mark.parametrize("args, message", [
    (["--dataset", "mnist"], "unknown dataset 'mnist'; choose one of: shapes"),
    (["--model", "resnet9000"], "unknown model 'resnet9000'"),
    (["--epochs", "0"], "epochs must be a whole number of at least 1"),
    (["--dataset", "folder", "--data-root", "/no/such/folder"], "data root /no/such/folder does not exist"),
    (["--dataset", "cifar10", "--data-root", "."], "CIFAR-10 not found under"),
    (["--epochs", "three"], "invalid int value: 'three'"),
    (["--resume"], "resume needs a checkpoint folder"),
    (["--lr", "-0.1"], "lr must be a positive number"),
    (["--n-train", "0"], "n_train must be a whole number of at least 1, got 0"),
    (["--val-fraction", "1"], "val_fraction must be in [0, 1)"),
    (["--momentum", "1.2"], "momentum must be in [0, 1), got 1.2"),
    (["--schedule", "onecycle"], "invalid choice: 'onecycle'"),
    (["--stop-after", "0"], "stop_after must be a whole number of at least 1"),
])
def test_bad_arguments_fail_with_one_line(args, message, tmp_path):
    out = tmp_path / "m.json"
    out.write_text("precious")
    result = cli_run(*SMALL, *args, "--metrics-out", str(out))  # the flags under test come last, and win
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert out.read_text() == "precious"  # nothing overwritten


def test_damaged_checkpoint_fails_cleanly(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    result = cli_run("--checkpoint-dir", str(tmp_path), "--resume", *SMALL)
    assert result.returncode == 2 and "damaged or not a checkpoint" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "last.pt").read_bytes() == b"not a checkpoint"


def test_checkpoint_without_resume_is_refused(tmp_path):
    assert cli_run("--epochs", "2", "--checkpoint-dir", str(tmp_path), "--stop-after", "1", *SMALL).returncode == 0
    before = (tmp_path / "last.pt").read_bytes()
    result = cli_run("--epochs", "2", "--checkpoint-dir", str(tmp_path), *SMALL)
    assert result.returncode == 2 and "already holds a checkpoint" in result.stderr
    assert (tmp_path / "last.pt").read_bytes() == before


def test_parser_knows_every_documented_option():
    options = {a for action in cli.train_parser()._actions for a in action.option_strings}
    documented = {"--dataset", "--model", "--epochs", "--batch-size", "--lr", "--seed", "--device", "--data-root",
                  "--checkpoint-dir", "--resume", "--metrics-out"}
    assert documented <= options


def test_few_shot_folder_fails_before_training_and_trains_without_validation(tmp_path):
    from PIL import Image

    for split, n in (("train", 1), ("val", 2)):
        for c in ("a", "b"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (20, 20), (100 * i, 50, 200)).save(tmp_path / split / c / f"{i}.png")
    out = tmp_path / "m.json"
    refused = cli_run("--dataset", "folder", "--data-root", str(tmp_path), "--metrics-out", str(out), "--quiet")
    assert refused.returncode == 2 and "val_fraction" in refused.stderr and "epoch" not in refused.stdout
    assert len(refused.stderr.strip().splitlines()) == 1 and not out.exists()
    done = cli_run("--dataset", "folder", "--data-root", str(tmp_path), "--val-fraction", "0", "--epochs", "1",
                   "--metrics-out", str(out), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "20x20 images (the images' own size)" in done.stdout and "no validation split" in done.stdout
    saved = json.loads(out.read_text())
    assert saved["val_size"] == 0 and saved["image_size"] == 20 and saved["history"][0]["val_acc"] is None


def test_python_m_lib_run_still_starts():
    result = subprocess.run([sys.executable, "-m", "lib.run", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--grid" in result.stdout


def test_train_and_evaluate_share_the_dataset_flags():
    """`python -m lib.evaluate --checkpoint` takes the dataset flags the training took, from one owner."""
    from lib import cli

    def dataset_flags(parser):
        group = next(g for g in parser._action_groups if g.title.startswith("data"))
        return {a.dest: (a.default, a.type, a.help) for a in group._group_actions
                if a.dest not in ("dataset", "model", "download", "seed")}

    train_flags, evaluate_flags = dataset_flags(cli.train_parser()), dataset_flags(cli.evaluate_parser())
    assert train_flags == evaluate_flags
    assert set(train_flags) == {"data_root", "image_size", "n_train", "n_val", "n_test", "difficulty",
                                "val_fraction"}
    args = cli.evaluate_parser().parse_args(["--dataset", "shapes", "--checkpoint", "x.pt", "--n-train", "300",
                                             "--difficulty", "easy"])
    assert cli.data_arguments(args) == {"data_root": None, "image_size": None, "n_train": 300, "n_val": 2000,
                                        "n_test": 2000, "difficulty": "easy"}
