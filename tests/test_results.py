"""lib.results: the typed record of a metrics file, its JSON form, and the command that repeats it."""

import json
import shlex

import pytest

from lib import cli, files, results
from lib.config import TrainConfig

from .conftest import REPO

RECORDED = REPO / "chapters" / "results" / "cifar10"


def record(**changes) -> results.RunRecord:
    values = dict(
        dataset="folder", model="seed_cnn", test_accuracy=0.5, precision_macro=0.4, precision_weighted=0.45,
        recall_macro=0.42, recall_weighted=0.5, f1_macro=0.41, f1_weighted=0.47, top5_accuracy=0.9,
        images_per_second=1000.0, seconds=12.5, device="cpu", parameters=1234, image_size=32, train_size=90,
        val_size=10, test_size=20, data={"data_root": "/data/my images", "image_size": None, "n_train": 10000,
                                         "n_val": 2000, "n_test": 2000, "val_fraction": 0.0},
        config=TrainConfig(epochs=3, lr=0.01, augment=False),
        history=[{"epoch": 1, "train_loss": 2.0, "train_acc": 0.2, "val_loss": 1.9, "val_acc": 0.3},
                 {"epoch": 2, "train_loss": 1.5, "train_acc": 0.4, "val_loss": 1.7, "val_acc": 0.35},
                 {"epoch": 3, "train_loss": 1.2, "train_acc": 0.5, "val_loss": 1.8, "val_acc": 0.33}],
        provenance={"torch_version": "9.9", "cpu_threads": 2})
    values.update(changes)
    return results.RunRecord(**values)


def test_round_trip_through_a_file(tmp_path):
    original = record()
    original.save(tmp_path / "run.json")
    written = json.loads((tmp_path / "run.json").read_text())
    # the keys readers of the JSON rely on, including the derived ones
    assert written["epochs"] == 3 and written["seed"] == 0 and written["torch_version"] == "9.9"
    assert written["config"]["lr"] == 0.01 and written["test_accuracy"] == 0.5
    back = results.load(tmp_path / "run.json")
    assert back == original
    assert back.best_epoch["epoch"] == 2 and back.epochs == 3


def test_command_line_repeats_the_run():
    line = record().command_line(metrics_out="again.json")
    assert line.startswith("OMP_NUM_THREADS=2 python -m lib.train ")
    words = shlex.split(line)[4:]
    args = cli.train_parser().parse_args(words)
    assert TrainConfig.from_args(args) == record().config
    assert (args.dataset, args.model, args.data_root, args.val_fraction) == ("folder", "seed_cnn",
                                                                             "/data/my images", 0.0)
    assert args.image_size == 32 and args.metrics_out == "again.json"
    assert "--data-root ~/data" in record().command_line(data_root="~/data", threads=False)
    with pytest.raises(results.ResultsError, match="has no training settings"):
        record(config=None).command_line()


def test_files_written_before_the_rename_read_as_linear(tmp_path):
    old = record().to_dict()
    old["config"]["schedule"] = "onecycle"
    for key in ("split", "val_size", "data"):  # older files have none of these
        del old[key]
    files.write_json(tmp_path / "old.json", old)
    back = results.load(tmp_path / "old.json")
    assert back.config.schedule == "linear" and back.val_size is None and back.data == {}


def test_unknown_keys_are_kept_and_missing_ones_refused(tmp_path):
    values = {**record().to_dict(), "note": "kept"}
    assert results.RunRecord.from_dict(values).to_dict()["note"] == "kept"
    del values["test_accuracy"]
    files.write_json(tmp_path / "bad.json", values)
    with pytest.raises(results.ResultsError, match=r"bad\.json: a metrics file needs test_accuracy"):
        results.load(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(results.ResultsError, match="not a readable JSON file"):
        results.load(tmp_path / "broken.json")
    with pytest.raises(results.ResultsError, match="no metrics file at"):
        results.load(tmp_path / "none.json")


@pytest.mark.skipif(not RECORDED.is_dir(), reason="the recorded runs are not in this checkout")
def test_the_recorded_runs_load():
    runs = results.load_folder(RECORDED)
    assert runs and all(r.config is not None and r.history for r in runs.values())
    for name, run in runs.items():
        raw = json.loads((RECORDED / f"{name}.json").read_text())
        assert run.test_accuracy == raw["test_accuracy"] and run.epochs == raw["config"]["epochs"]


def test_provenance_names_versions_and_device():
    info = results.provenance("cpu")
    assert {"torch_version", "python_version", "platform", "cpu_threads", "time_utc"} <= set(info)
    assert info["device"] == "cpu"
