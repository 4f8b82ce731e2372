"""lib.config: TrainConfig's rules, the flags derived from its fields, and its own command line."""

import shlex
from dataclasses import fields

import pytest

from lib import cli
from lib.config import SCHEDULES, TrainConfig, setting_names

CHANGED = TrainConfig(epochs=7, batch_size=32, lr=0.0123456789, optimizer="sgd", momentum=0.5, weight_decay=0.0,
                      schedule="cosine", warmup=0.1, label_smoothing=0.1, augment=False, seed=4, device="cpu",
                      amp=False, channels_last=True, compile=True, num_workers=3)


def parse(words):
    return TrainConfig.from_args(cli.train_parser().parse_args(words))


def test_every_setting_has_a_flag_with_its_default():
    parser = cli.train_parser()
    options = {a for action in parser._actions for a in action.option_strings}
    for name in setting_names():
        assert "--" + name.replace("_", "-") in options, name
    assert parse([]) == TrainConfig()  # no flags: exactly the defaults
    assert {"--momentum", "--warmup", "--channels-last", "--no-channels-last", "--no-augment", "--no-amp"} <= options


@pytest.mark.parametrize("config", [TrainConfig(), CHANGED, TrainConfig(amp=True, channels_last=False)])
def test_the_command_line_it_writes_gives_it_back(config):
    assert parse(config.to_args()) == config
    assert parse(config.to_args(changed_only=True)) == config
    words = shlex.split(config.to_command_line())
    assert words[:3] == ["python", "-m", "lib.train"] and parse(words[3:]) == config


def test_changed_only_and_options():
    assert TrainConfig().to_args(changed_only=True) == []
    assert TrainConfig(lr=0.01, augment=False).to_args(changed_only=True) == ["--lr", "0.01", "--no-augment"]
    line = TrainConfig(epochs=2).to_command_line(changed_only=True, dataset="folder", data_root="~/my images",
                                                 download=True, image_size=None)
    assert line == "python -m lib.train --dataset folder --data-root ~/'my images' --download --epochs 2"


@pytest.mark.parametrize("settings, message", [
    ({"epochs": 0}, "epochs must be a whole number of at least 1, got 0"),
    ({"epochs": 2.5}, "epochs must be a whole number, got 2.5"),
    ({"batch_size": True}, "batch_size must be a whole number, got True"),
    ({"lr": 0.0}, "lr must be a positive number, got 0.0"),
    ({"lr": float("inf")}, "lr must be a positive number, got inf"),
    ({"optimizer": "lion"}, "unknown optimizer 'lion'; choose one of adamw, sgd"),
    ({"schedule": "onecycle"}, "schedule 'onecycle' is now called 'linear'"),
    ({"momentum": 1.0}, "momentum must be in [0, 1), got 1.0"),
    ({"warmup": -0.1}, "warmup must be in [0, 1)"),
    ({"label_smoothing": 1}, "label_smoothing must be in [0, 1)"),
    ({"weight_decay": -1e-4}, "weight_decay must be a number >= 0"),
    ({"seed": -1}, "seed must be a whole number of at least 0, got -1"),
    ({"device": "tpu"}, "unknown device 'tpu'; choose one of auto, cpu, cuda, mps"),
    ({"amp": 1}, "amp must be a bool or None, got 1"),
    ({"num_workers": -2}, "num_workers must be at least 0, got -2"),
])
def test_check_gives_one_line_per_rule(settings, message):
    with pytest.raises(ValueError) as caught:
        TrainConfig(**settings).check()
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_check_accepts_the_edges_and_ints_for_floats():
    TrainConfig(lr=1, momentum=0, warmup=0, weight_decay=0, seed=0, epochs=1, batch_size=1, num_workers=0).check()
    assert CHANGED.check() is CHANGED
    assert SCHEDULES == ("linear", "cosine", "constant")


def test_from_dict_round_trip_and_unknown_keys():
    assert TrainConfig.from_dict(CHANGED.as_dict()) == CHANGED
    assert TrainConfig.from_dict({"epochs": 3}) == TrainConfig(epochs=3)
    with pytest.raises(ValueError, match="unknown training setting\\(s\\) epoch;"):
        TrainConfig.from_dict({"epoch": 3})


def test_field_help_is_written():
    for f in fields(TrainConfig):
        assert len(f.metadata.get("help", "")) > 8, f.name
