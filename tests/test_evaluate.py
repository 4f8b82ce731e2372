"""The command line `python -m lib.evaluate`: ImageNet-layout folders, checkpoints, and every error case."""

import csv
import json
import subprocess
import sys

import pytest
import torch

from lib import checkpoint, data, evaluate, metrics, models, photos, pretrained, results, train

REQUIRED = {"dataset", "model", "split", "test_accuracy", "top5_accuracy", "precision_weighted", "recall_weighted",
            "f1_weighted", "precision_macro", "recall_macro", "f1_macro", "images_per_second", "seconds", "device",
            "torch_version", "parameters", "image_size", "test_size", "provenance"}


def run_main(*args) -> int:
    """evaluate.main in this process; argparse's own errors exit, and give their code too."""
    try:
        return evaluate.main(list(args))
    except SystemExit as stop:
        return stop.code


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    photos.write_imagenet_folder(root, modes=("RGB", "L", "CMYK"))
    return root


def test_pretrained_on_an_imagenet_folder(photo_folder, tmp_path):
    out, predictions = tmp_path / "metrics.json", tmp_path / "predictions.csv"
    result = subprocess.run([sys.executable, "-m", "lib.evaluate", "--dataset", "imagenet", "--data-root",
                             str(photo_folder), "--model", "efficientnet_lite0", "--pretrained", "--device", "cpu",
                             "--metrics-out", str(out), "--predictions-out", str(predictions)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    payload = json.loads(out.read_text())
    assert REQUIRED <= set(payload)
    assert (payload["dataset"], payload["split"], payload["test_size"], payload["classes_present"]) == \
        ("imagenet", "val", 6, 2)
    assert payload["preprocessing"]["resize"] == 256 and payload["preprocessing"]["crop"] == 224
    record = results.load(out)  # the metrics file of lib.train, read back by its owner
    assert record.split == "val" and record.test_size == 6 and record.extra["classes_present"] == 2
    rows = list(csv.DictReader(predictions.open()))
    assert len(rows) == 6
    accept = photos.catalogue()["chelsea"].accept
    for row in rows:  # labels are wnids of the 1000 classes, whatever folders are present
        name = row["image"].split("/")[-1]
        if name.startswith("chelsea"):
            assert row["label"] == "n02123045" and row["top1"] in accept
        else:
            assert row["label"] == "n07920052" and row["top1"] == "n07920052"
    right = sum(row["top1"] == row["label"] for row in rows) / len(rows)
    assert payload["test_accuracy"] == pytest.approx(right)
    assert payload["recall_weighted"] == pytest.approx(payload["test_accuracy"])
    assert payload["top5_accuracy"] == 1.0


def test_labels_follow_the_1000_wnids_not_the_folders(photo_folder):
    paths, labels, found = evaluate.wnid_folder(photo_folder / "val", pretrained.imagenet_wnids())
    assert found == ["n02123045", "n07920052"]
    assert sorted(set(labels.tolist())) == [281, 967]


def test_a_checkpoint_of_lib_train(tmp_path, capsys):
    dataset = data.load("shapes", n_train=200, n_val=50, n_test=80, seed=0)
    model = models.build("seed_cnn", 10, 3, 32, seed=5)
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"epoch": 1, "model": model.state_dict(), "config": {"seed": 0}})
    out = tmp_path / "m.json"
    code = evaluate.main(["--dataset", "shapes", "--model", "seed_cnn", "--checkpoint", str(path), "--n-train", "200",
                          "--n-val", "50", "--n-test", "80", "--metrics-out", str(out)])
    assert code == 0, capsys.readouterr().err
    payload = json.loads(out.read_text())
    scores, labels = train.predict(model, dataset, "test")
    assert payload["split"] == "test" and payload["test_size"] == 80
    assert payload["test_accuracy"] == pytest.approx(metrics.accuracy(scores, labels))


def _write_bad_folder(tmp_path):
    (tmp_path / "val" / "cats").mkdir(parents=True)
    photos.samples(["chelsea"])["chelsea"].save(tmp_path / "val" / "cats" / "a.JPEG")
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["--dataset", "imagenet", "--model", "resnet9000", "--pretrained"], "unknown network 'resnet9000'"),
    (["--dataset", "mnist", "--pretrained"], "unknown dataset 'mnist'"),
    (["--dataset", "imagenet", "--data-root", "/no/such/folder", "--pretrained"], "data root /no/such/folder does"),
    (["--dataset", "imagenet", "--pretrained", "--split", "test"], "test does not exist"),
    (["--dataset", "imagenet", "--pretrained", "--model", "seed_cnn"], "seed_cnn has no ImageNet weights"),
    (["--dataset", "imagenet"], "give exactly one of --pretrained"),
    (["--dataset", "imagenet", "--pretrained", "--checkpoint", "x.pt"], "give exactly one of --pretrained"),
    (["--dataset", "shapes", "--pretrained"], "needs --dataset imagenet or folder"),
    (["--dataset", "imagenet", "--pretrained", "--batch-size", "0"], "--batch-size must be at least 1"),
    (["--dataset", "imagenet", "--pretrained", "--split", "train"], "invalid choice: 'train'"),
    (["--dataset", "shapes", "--model", "seed_cnn", "--checkpoint", "missing.pt"], "no checkpoint at missing.pt"),
])
def test_bad_arguments_fail_with_one_line(args, message, photo_folder, tmp_path, capsys):
    out = tmp_path / "m.json"
    out.write_text("precious")
    if "--data-root" not in args and "imagenet" in args:
        args = [*args, "--data-root", str(photo_folder)]
    assert run_main(*args, "--metrics-out", str(out)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert out.read_text() == "precious"  # nothing overwritten


def test_a_folder_that_is_not_a_wnid(tmp_path, capsys):
    root = _write_bad_folder(tmp_path)
    assert evaluate.main(["--dataset", "folder", "--data-root", str(root), "--pretrained",
                          "--metrics-out", str(tmp_path / "m.json")]) == 2
    assert "cats is not an ILSVRC-2012 wnid" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_a_damaged_image(tmp_path, capsys):
    folder = tmp_path / "val" / "n07920052"
    folder.mkdir(parents=True)
    (folder / "broken.JPEG").write_bytes(b"\xff\xd8 this is not a JPEG")
    assert evaluate.main(["--dataset", "imagenet", "--data-root", str(tmp_path), "--pretrained",
                          "--metrics-out", str(tmp_path / "m.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot read image" in err[0] and "broken.JPEG" in err[0]
    assert not (tmp_path / "m.json").exists()


def test_a_checkpoint_that_does_not_fit(tmp_path, capsys):
    path = tmp_path / "last.pt"
    checkpoint.save(path, {"model": models.build("small_resnet", 10, 3, 32).state_dict(), "config": {"seed": 0}})
    code = evaluate.main(["--dataset", "shapes", "--model", "seed_cnn", "--checkpoint", str(path), "--n-train", "50",
                          "--n-val", "10", "--n-test", "10", "--metrics-out", str(tmp_path / "m.json")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit seed_cnn on shapes" in err[0]
    assert not (tmp_path / "m.json").exists()
    torch.save({"not": "ours"}, tmp_path / "foreign.pt")
    assert evaluate.main(["--dataset", "shapes", "--model", "seed_cnn", "--checkpoint", str(tmp_path / "foreign.pt")]) == 2
    assert "not a checkpoint of this course" in capsys.readouterr().err
