"""The Colab setup cell that opens every chapter, run here with a stand-in for `google.colab`.

In Colab the cell clones the repository (here: a local repository that git is told to use in place of
GitHub's address), installs it with pip (recorded, not run: the course is installed here already) and
moves into the clone's chapters/ folder, so that a chapter finds the files it reads (chapter 5's sweep
reads its own notebook, the results page reads chapters/results/) as it does in a clone.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
import yaml

from .conftest import REPO

CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
URL, BRANCH = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]


def setup_cell() -> str:
    return nbformat.read(REPO / "chapters" / "00_how_this_course_runs.ipynb", as_version=4).cells[0].source


def git(*args, cwd):
    REAL_RUN(["git", "-c", "user.name=test", "-c", "user.email=test@example.org", *args], cwd=cwd,
                   check=True, capture_output=True)


@pytest.fixture
def remote(tmp_path, monkeypatch):
    """A repository holding the course's chapters, lib and pyproject.toml on branch `BRANCH`, which git
    fetches whenever it is asked for `URL` (git's url.<base>.insteadOf)."""
    origin = tmp_path / "origin"
    origin.mkdir()
    for name in ("chapters", "lib"):
        shutil.copytree(REPO / name, origin / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints"))
    shutil.copy(REPO / "pyproject.toml", origin)
    git("init", "-q", "-b", BRANCH, cwd=origin)
    git("add", "-A", cwd=origin)
    git("commit", "-q", "-m", "course", cwd=origin)
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{origin.as_uri()}.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", URL)
    return origin


REAL_RUN = subprocess.run
REAL_FIND_SPEC = importlib.util.find_spec


class Commands:
    """subprocess.run for the cell: git runs; pip is recorded and not run."""

    def __init__(self):
        self.calls = []

    def __call__(self, command, **kwargs):
        self.calls.append(list(command))
        if command[0] == "git":
            return REAL_RUN(command, **kwargs)
        return subprocess.CompletedProcess(command, 0)


def run_cell(monkeypatch, tmp_path, *, colab: bool, lib_installed: bool) -> Commands:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    if colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    commands = Commands()
    monkeypatch.setattr(subprocess, "run", commands)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: (REAL_FIND_SPEC(name, *a) if lib_installed or name != "lib" else None))
    exec(compile(setup_cell(), "colab-setup-cell", "exec"), {"__name__": "__main__"})
    return commands


def test_outside_colab_the_cell_does_nothing(monkeypatch, tmp_path):
    commands = run_cell(monkeypatch, tmp_path, colab=False, lib_installed=False)
    assert commands.calls == []
    assert Path.cwd() == tmp_path


def test_in_colab_it_clones_installs_and_moves_to_the_chapters(remote, monkeypatch, tmp_path):
    commands = run_cell(monkeypatch, tmp_path, colab=True, lib_installed=False)
    course = tmp_path / "home" / "imagenet-and-ai"
    assert commands.calls[0][:2] == ["git", "clone"] and URL in commands.calls[0]
    assert f"--branch={BRANCH}" in commands.calls[0]
    assert commands.calls[1] == [sys.executable, "-m", "pip", "install", "-q", str(course)]
    assert Path.cwd() == course / "chapters"
    # What the chapters read from their own folder is there, as in a clone.
    assert Path("05_hands_on_project.ipynb").is_file()
    assert sorted(Path("results/cifar10").glob("*.json")), "the recorded runs of the results page"
    assert (course / "pyproject.toml").is_file() and (course / "lib" / "__init__.py").is_file()


def test_running_it_again_neither_clones_nor_installs_again(remote, monkeypatch, tmp_path):
    run_cell(monkeypatch, tmp_path, colab=True, lib_installed=False)
    again = run_cell(monkeypatch, tmp_path, colab=True, lib_installed=True)
    assert again.calls == []
    assert Path.cwd() == tmp_path / "home" / "imagenet-and-ai" / "chapters"


def test_a_failed_clone_stops_the_notebook(monkeypatch, tmp_path):
    # No stand-in repository: git cannot reach the address (no network here, or a wrong address).
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
    monkeypatch.setenv("GIT_CONFIG_KEY_0", f"url.{(tmp_path / 'missing').as_uri()}.insteadOf")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", URL)
    with pytest.raises(subprocess.CalledProcessError):
        run_cell(monkeypatch, tmp_path, colab=True, lib_installed=False)
    assert not os.path.isdir(tmp_path / "home" / "imagenet-and-ai" / "chapters")
