"""lib.params: the check that every notebook runs on its papermill parameters."""

import pytest

from lib import params

CELL = """# Parameters of this chapter (papermill -p NAME VALUE overrides them; the next cell checks them)
dataset = "shapes"  # which data
epochs = 3
lr = 0.01
data_root = None
augment = True
"""


def namespace(*cells, **values):
    ns = {"In": ["", *cells]}
    exec(CELL, ns)
    for cell in cells[1:]:
        exec(cell, ns)
    ns.update(values)
    return ns


def test_defaults_pass_and_ints_become_floats():
    ns = namespace(CELL, "# Parameters\nlr = 1\nepochs = 5\n")
    p = params.check(ns)
    assert p.lr == 1.0 and isinstance(p.lr, float) and p.epochs == 5 and ns["lr"] == 1.0


def test_unknown_injected_parameter():
    ns = namespace(CELL, "# Parameters\nepoch = 5\n")
    with pytest.raises(params.ParameterError, match="unknown parameter\\(s\\) epoch; this chapter takes: dataset"):
        params.check(ns)


@pytest.mark.parametrize("cell, message", [
    ("# Parameters\nepochs = '5'\n", "parameter 'epochs' must be int like its default 3, got str '5'"),
    ("# Parameters\naugment = 1\n", "parameter 'augment' must be bool"),
    ("# Parameters\nepochs = 2.5\n", "parameter 'epochs' must be int"),
    ("# Parameters\ndataset = 'imagenet21k'\n", "unknown dataset 'imagenet21k'; choose one of: shapes"),
    ("# Parameters\nepochs = 0\n", "epochs must be a whole number of at least 1, got 0"),
    ("# Parameters\nlr = 0.0\n", "lr must be a positive number, got 0.0"),
])
def test_bad_values(cell, message):
    with pytest.raises(params.ParameterError, match=message.replace("(", "\\(").replace(")", "\\)")):
        params.check(namespace(CELL, cell))


def test_none_default_takes_anything_and_custom_choices():
    params.check(namespace(CELL, "# Parameters\ndata_root = '/data'\n"))
    with pytest.raises(params.ParameterError, match="unknown dataset 'digits'"):
        params.check(namespace(CELL, "# Parameters\ndataset = 'digits'\n"), choices={"dataset": ["shapes"]})


def test_without_history_the_literal_globals_are_checked():
    # nbval executes with store_history=False: In stays [''] and nothing can have been injected
    ns = {"In": [""], "dataset": "shapes", "epochs": 2, "sys": __import__("sys"), "_hidden": 1}
    p = params.check(ns)
    assert vars(p) == {"dataset": "shapes", "epochs": 2}
    with pytest.raises(params.ParameterError, match="unknown dataset"):
        params.check({"In": [""], "dataset": "mnist"})


def test_missing_parameters_cell():
    with pytest.raises(params.ParameterError, match="no parameters cell found"):
        params.check({"In": ["x = 1"]})


def test_non_literal_default_is_refused():
    with pytest.raises(params.ParameterError, match="must be a literal"):
        params.assignments("epochs = 3\nlr = 1 / compute()\n")


@pytest.mark.parametrize("name, value, flag", [
    ("n_train", 1, "--n-train"), ("n_train", 0, "--n-train"), ("n_val", 0, "--n-val"), ("n_test", 0, "--n-test"),
    ("image_size", 8, "--image-size"), ("image_size", 7, "--image-size"), ("momentum", 0.95, "--momentum"),
    ("momentum", 1.5, "--momentum"), ("seed", -1, "--seed"), ("epochs", 1, "--epochs"), ("warmup", 1.0, "--warmup"),
    ("val_fraction", 0.0, "--val-fraction"), ("batch_size", 0, "--batch-size"), ("difficulty", "easy", "--difficulty"),
    ("difficulty", "hard", "--difficulty"),
])
def test_a_notebook_and_the_command_line_accept_the_same_values(name, value, flag):
    """One owner per rule: lib.params and python -m lib.train ask the same checks."""
    from lib import cli

    try:
        params.check({"In": [""], "dataset": "shapes", name: value})
        notebook_ok = True
    except params.ParameterError:
        notebook_ok = False
    try:
        cli.check_train_arguments(cli.train_parser().parse_args([flag, str(value), "--device", "cpu"]))
        command_line_ok = True
    except ValueError:
        command_line_ok = False
    assert notebook_ok == command_line_ok
    assert notebook_ok == ((name, value) in {("n_train", 1), ("n_val", 0), ("image_size", 8), ("momentum", 0.95),
                                             ("epochs", 1), ("val_fraction", 0.0), ("difficulty", "easy")})


def test_checking_training_parameters_does_not_import_torch():
    import subprocess
    import sys

    code = ("import sys; from lib import params; params.check({'In': [''], 'epochs': 3, 'lr': 0.01, "
            "'schedule': 'linear'}); print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr
