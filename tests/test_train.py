"""fit: determinism, checkpoints, exact resume, and its errors."""

import pytest
import torch

from lib import checkpoint, models, train

METRICS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr")


def quiet(_):
    pass


def run(ds, **kw):
    net = models.build("seed_cnn", ds.num_classes, ds.channels, ds.image_size, seed=0)
    result = train.fit(net, ds, epochs=3, batch_size=64, seed=11, device="cpu", progress=False, log=quiet, **kw)
    return net, result


def metrics_only(history):
    return [{k: row[k] for k in METRICS} for row in history]


def test_same_seed_same_results(tiny_shapes):
    net_a, a = run(tiny_shapes)
    net_b, b = run(tiny_shapes)
    assert metrics_only(a.history) == metrics_only(b.history)
    assert all(torch.equal(x, y) for x, y in zip(net_a.state_dict().values(), net_b.state_dict().values()))
    assert len(a.history) == 3 and a.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # onecycle ends at 0


def test_resume_ends_exactly_where_an_uninterrupted_run_ends(tiny_shapes, tmp_path):
    net_full, full = run(tiny_shapes)
    _, first = run(tiny_shapes, checkpoint_dir=tmp_path, stop_after=2)
    assert first.stopped_early and len(first.history) == 2
    saved = checkpoint.load(tmp_path / "last.pt")
    assert saved["epoch"] == 2 and set(saved) >= {"model", "optimizer", "scheduler", "rng", "history", "config"}
    net_resumed, resumed = run(tiny_shapes, checkpoint_dir=tmp_path, resume=True)
    assert metrics_only(resumed.history) == metrics_only(full.history)
    for (name, x), y in zip(net_full.state_dict().items(), net_resumed.state_dict().values()):
        assert torch.equal(x, y), name


def test_existing_checkpoint_is_never_overwritten(tiny_shapes, tmp_path):
    run(tiny_shapes, checkpoint_dir=tmp_path, stop_after=1)
    before = (tmp_path / "last.pt").read_bytes()
    with pytest.raises(checkpoint.CheckpointError, match="already holds a checkpoint"):
        run(tiny_shapes, checkpoint_dir=tmp_path)
    assert (tmp_path / "last.pt").read_bytes() == before


def test_resume_with_other_settings_is_refused(tiny_shapes, tmp_path):
    run(tiny_shapes, checkpoint_dir=tmp_path, stop_after=1)
    net = models.build("seed_cnn", seed=0)
    with pytest.raises(checkpoint.CheckpointError, match="other settings.*lr"):
        train.fit(net, tiny_shapes, epochs=3, batch_size=64, seed=11, lr=0.1, device="cpu", progress=False,
                  log=quiet, checkpoint_dir=tmp_path, resume=True)


def test_damaged_checkpoint(tmp_path, tiny_shapes):
    (tmp_path / "last.pt").write_bytes(b"\x80\x02garbage")
    with pytest.raises(checkpoint.CheckpointError, match="damaged or not a checkpoint"):
        run(tiny_shapes, checkpoint_dir=tmp_path, resume=True)
    torch.save({"hello": torch.zeros(1)}, tmp_path / "foreign.pt")
    with pytest.raises(checkpoint.CheckpointError, match="not a checkpoint of this course"):
        checkpoint.load(tmp_path / "foreign.pt")


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    target = tmp_path / "metrics.json"
    checkpoint.write_json(target, {"a": 1})

    def broken(file):
        file.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        checkpoint.atomic_write(target, broken)
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_bad_settings(tiny_shapes):
    net = models.build("seed_cnn")
    for kw, message in (({"epochs": 0}, "epochs must be"), ({"lr": -1.0}, "lr must be"),
                        ({"optimizer": "lion"}, "unknown optimizer"), ({"device": "tpu"}, "unknown device")):
        with pytest.raises(ValueError, match=message):
            train.fit(net, tiny_shapes, progress=False, log=quiet, **kw)
    with pytest.raises(TypeError, match="unknown fit setting"):
        train.fit(net, tiny_shapes, epoch=3)


def test_sgd_cosine_and_predict(tiny_shapes):
    net = models.build("small_resnet", seed=0)
    result = train.fit(net, tiny_shapes, epochs=1, optimizer="sgd", schedule="cosine", lr=0.05, device="cpu",
                       progress=False, log=quiet)
    assert result.images_per_second > 0 and result.provenance["torch_version"] == torch.__version__
    scores, labels = train.predict(net, tiny_shapes, "test")
    assert scores.shape == (100, 10) and torch.equal(labels, tiny_shapes.test.labels)


def test_pick_device():
    assert train.pick_device("cpu").type == "cpu"
    assert train.pick_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="has none"):
            train.pick_device("cuda")
