"""Checking a notebook's papermill parameters before any work is done.

Every chapter has a `parameters` cell of plain assignments whose first line starts with
PARAMETERS_MARKER; the cell after it calls `check(globals())`. Papermill (`-p NAME VALUE`) injects a
cell of new assignments after the parameters cell, and passes unknown names and wrong types through
silently; `check` catches both, comparing every value with the type of its default in the
parameters cell and every injected name with the names defined there. CONTRIBUTING.md explains it.
"""

from __future__ import annotations

import ast
from types import SimpleNamespace

PARAMETERS_MARKER = "# Parameters of this chapter"
INJECTED_MARKER = "# Parameters"  # papermill's injected cell starts with exactly this line


class ParameterError(ValueError):
    """A parameter has an unknown name, a wrong type or a value out of range."""


def assignments(source: str) -> dict[str, object]:
    """Names and literal values assigned at the top level of a cell's source."""
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                raise ParameterError(f"parameter {node.targets[0].id!r} must be a literal value "
                                     "(number, string, boolean, None or list)") from None
    return values


def _cells_run(namespace: dict) -> list[str]:
    """Sources of the cells run so far in this IPython kernel (empty outside IPython)."""
    history = namespace.get("In")
    return [cell for cell in history if isinstance(cell, str)] if isinstance(history, list) else []


_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}


def _literal_globals(namespace: dict) -> dict:
    """Names bound to plain literal values (numbers, strings, booleans, None, lists of them)."""
    def literal(value) -> bool:
        if isinstance(value, list):
            return all(literal(v) for v in value)
        return value is None or isinstance(value, (bool, int, float, str))

    return {name: value for name, value in namespace.items()
            if not name.startswith("_") and name not in _IPYTHON_NAMES and literal(value)}


def _type_name(value) -> str:
    return type(value).__name__


def _check_type(name: str, value, default):
    if default is None:
        return value
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ParameterError(f"parameter {name!r} must be {_type_name(default)} like its default {default!r}, "
                             f"got {_type_name(value)} {value!r}")
    return value


def check(namespace: dict, defaults: dict | None = None, choices: dict | None = None,
          minimum: dict | None = None) -> SimpleNamespace:
    """Validate the parameters in `namespace` (a notebook's `globals()`); return them as a namespace.

    defaults: names and default values; read from the cell marked PARAMETERS_MARKER when omitted.
    choices: allowed values per name (`dataset`, `model` and `device` are checked against the
    course's lists unless given). minimum: smallest allowed value per name (`epochs`,
    `batch_size`, ... default to 1; `lr` must be positive).
    Raises ParameterError with a one-line message naming the parameter.
    """
    cells = _cells_run(namespace)
    if defaults is None:
        marked = [c for c in cells if c.lstrip().startswith(PARAMETERS_MARKER)]
        if marked:
            defaults = assignments(marked[-1])
        elif "In" in namespace and not any(cells):
            # The kernel keeps no history (nbval runs cells with store_history=False): nothing can
            # have been injected, so the parameters are the literal values the notebook defined.
            defaults = _literal_globals(namespace)
        else:
            raise ParameterError(f"no parameters cell found: its first line must start with {PARAMETERS_MARKER!r}")
    injected = [c for c in cells if c.lstrip().split("\n", 1)[0].strip() == INJECTED_MARKER]
    for cell in injected:
        unknown = sorted(set(assignments(cell)) - set(defaults))
        if unknown:
            raise ParameterError(f"unknown parameter(s) {', '.join(unknown)}; this chapter takes: "
                                 f"{', '.join(defaults)}")
    values = {}
    for name, default in defaults.items():
        if name not in namespace:
            raise ParameterError(f"parameter {name!r} is not defined; run the parameters cell first")
        values[name] = _check_type(name, namespace[name], default)
    _check_values(values, choices or {}, minimum or {})
    namespace.update(values)  # e.g. an int given for a float parameter becomes a float
    return SimpleNamespace(**values)


def _check_values(values: dict, choices: dict, minimum: dict) -> None:
    from lib import data, models, train

    standard_choices = {"dataset": data.DATASETS, "device": train.DEVICES, "optimizer": train.OPTIMIZERS,
                        "schedule": train.SCHEDULES}
    for name, allowed in {**standard_choices, **choices}.items():
        if name in values and values[name] is not None and values[name] not in allowed:
            raise ParameterError(f"unknown {name} {values[name]!r}; choose one of: {', '.join(map(str, allowed))}")
    if "model" in values and "model" not in choices:
        try:
            models.check_name(values["model"])
        except models.ModelError as error:
            raise ParameterError(str(error)) from None
    floors = {"epochs": 1, "batch_size": 1, "n_train": 10, "n_val": 1, "n_test": 1, "image_size": 8, **minimum}
    for name, floor in floors.items():
        if name in values and values[name] is not None and values[name] < floor:
            raise ParameterError(f"parameter {name!r} must be at least {floor}, got {values[name]!r}")
    for name in ("lr",):
        if name in values and not values[name] > 0:
            raise ParameterError(f"parameter {name!r} must be positive, got {values[name]!r}")
