"""fit: determinism, checkpoints, exact resume, and its errors."""

import pytest
import torch

from lib import checkpoint, files, models, train

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
    assert len(a.history) == 3 and a.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # the linear schedule ends at 0


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
    files.write_json(target, {"a": 1})

    def broken(file):
        file.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.atomic_write(target, broken)
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


def test_without_validation_it_trains_and_says_so(tiny_shapes):
    from lib import data

    no_val = data.Dataset("shapes", tiny_shapes.classes, tiny_shapes.train, data.TensorSplit(
        tiny_shapes.val.images[:0], tiny_shapes.val.labels[:0]), tiny_shapes.test, tiny_shapes.mean, tiny_shapes.std)
    lines = []
    net = models.for_dataset("seed_cnn", no_val, seed=0)
    result = train.fit(net, no_val, epochs=2, batch_size=64, device="cpu", progress=False, log=lines.append)
    assert sum("no validation split" in line for line in lines) == 1
    assert [row["val_acc"] for row in result.history] == [None, None]
    assert all(row["train_loss"] > 0 for row in result.history)
    assert "-" in lines[-1].split()  # the table row shows a dash for the missing validation


def test_prepare_checks_everything_before_any_work(tmp_path):
    setup = train.prepare(epochs=2, device="cpu")
    assert setup.config.epochs == 2 and setup.device.type == "cpu" and setup.saved is None
    with pytest.raises(ValueError, match="stop_after must be a whole number of at least 1"):
        train.prepare(stop_after=0)
    with pytest.raises(ValueError, match="resume needs a checkpoint folder"):
        train.prepare(resume=True)
    with pytest.raises(TypeError, match="either a setup or the settings"):
        train.fit(models.build("seed_cnn"), None, setup=setup, epochs=3)


def test_resume_reads_the_checkpoint_once_and_picks_the_device_once(tiny_shapes, tmp_path, monkeypatch):
    run(tiny_shapes, checkpoint_dir=tmp_path, stop_after=1)
    reads, picks = [], []
    real_load, real_pick = checkpoint.load, train.pick_device
    monkeypatch.setattr(checkpoint, "load", lambda path: reads.append(path) or real_load(path))
    monkeypatch.setattr(train, "pick_device", lambda device: picks.append(device) or real_pick(device))
    from lib import cli

    code = cli.train_main(["--epochs", "3", "--batch-size", "64", "--seed", "11", "--device", "cpu", "--n-train",
                           "100", "--n-val", "20", "--n-test", "20", "--checkpoint-dir", str(tmp_path), "--resume",
                           "--quiet"])
    assert code == 0 and len(reads) == 1 and picks == ["cpu"]


def test_a_checkpoint_written_as_onecycle_fails_the_settings_check(tiny_shapes, tmp_path):
    run(tiny_shapes, checkpoint_dir=tmp_path, stop_after=1)
    saved = checkpoint.load(tmp_path / "last.pt")
    saved["config"]["schedule"] = "onecycle"
    checkpoint.save(tmp_path / "last.pt", {k: v for k, v in saved.items() if k != "format"})
    with pytest.raises(checkpoint.CheckpointError) as caught:
        run(tiny_shapes, checkpoint_dir=tmp_path, resume=True)
    assert "other settings (schedule 'onecycle' -> 'linear')" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_predict_runs_where_the_model_is(tiny_shapes):
    net = models.for_dataset("seed_cnn", tiny_shapes, seed=0)
    scores, labels = train.predict(net, tiny_shapes, "val")
    assert scores.shape == (100, 10) and next(net.parameters()).device.type == "cpu"
    cpu_scores, _ = train.predict(net, tiny_shapes, "val", device="cpu")
    assert torch.equal(scores, cpu_scores)


def test_train_epoch_is_the_hand_written_loop(tiny_shapes):
    """train_epoch does what chapter 3's loop does: the same weights after one epoch."""
    from lib import data

    def batches():
        loader = data.loader(tiny_shapes, "train", 50, train=True, seed=4)
        loader.set_epoch(0)
        return loader

    by_step = models.for_dataset("seed_cnn", tiny_shapes, seed=1)
    optimizer = torch.optim.SGD(by_step.parameters(), lr=0.05)
    loss, accuracy, seen = train.train_epoch(by_step, batches(), optimizer, torch.nn.CrossEntropyLoss())
    by_hand = models.for_dataset("seed_cnn", tiny_shapes, seed=1)
    hand_optimizer = torch.optim.SGD(by_hand.parameters(), lr=0.05)
    losses = []
    for x, y in batches():
        batch_loss = torch.nn.functional.cross_entropy(by_hand(x), y)
        hand_optimizer.zero_grad()
        batch_loss.backward()
        hand_optimizer.step()
        losses.append(batch_loss.item())
    assert seen == 400 and 0 <= accuracy <= 1 and loss == pytest.approx(sum(losses) / len(losses), rel=1e-5)
    for a, b in zip(by_step.parameters(), by_hand.parameters()):
        assert torch.equal(a, b)


def test_random_streams_differ():
    from lib import seeds

    values = {seeds.seed_for(0, epoch, stream) for epoch in range(3) for stream in seeds.Stream}
    assert len(values) == 3 * len(seeds.Stream)
    assert seeds.seed_for(5, 1, seeds.Stream.AUGMENT) == seeds.seed_for(5, 1, seeds.Stream.AUGMENT)
    a = torch.rand(4, generator=seeds.generator(1, 2, seeds.Stream.SHUFFLE))
    assert torch.equal(a, torch.rand(4, generator=seeds.generator(1, 2, seeds.Stream.SHUFFLE)))
