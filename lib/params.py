"""Checking a notebook's papermill parameters before any work is done.

Every chapter has a `parameters` cell of plain assignments whose first line starts with
PARAMETERS_MARKER; the cell after it calls `check(globals())`. Papermill (`-p NAME VALUE`) injects a
cell of new assignments after the parameters cell, and passes unknown names and wrong types through
silently; `check` catches both, comparing every value with the type of its default in the
parameters cell and every injected name with the names defined there. The values' own rules are
asked of the modules that own them (`lib.config.TrainConfig.check`, `lib.data.check_arguments`,
`lib.models.check_name`), so a notebook and the command line accept exactly the same values.
CONTRIBUTING.md explains it.
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

    This function checks names and types: every injected name must be a parameter, every value
    must have its default's type. The values' rules belong to their owners, which it then asks:
    the training settings (`epochs`, `batch_size`, `lr`, `seed`, `device`, ... any field of
    `lib.config.TrainConfig`) build a TrainConfig that checks itself; the dataset's (`dataset`,
    `data_root`, `image_size`, `n_train`, `n_val`, `n_test`, `difficulty`, `val_fraction`) go to
    `lib.data.check_arguments`, the rules of `lib.data.load`; `model` to `lib.models.check_name`.
    A chapter's own parameters take its own rules: `choices` (allowed values per name) and
    `minimum` (smallest allowed value per name), which may also narrow a standard parameter.
    defaults: names and default values; read from the cell marked PARAMETERS_MARKER when omitted.
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
    _check_chapter_rules(values, choices or {}, minimum or {})
    _check_with_owners(values)
    namespace.update(values)  # e.g. an int given for a float parameter becomes a float
    return SimpleNamespace(**values)


def _check_chapter_rules(values: dict, choices: dict, minimum: dict) -> None:
    for name, allowed in choices.items():
        if name in values and values[name] is not None and values[name] not in allowed:
            raise ParameterError(f"unknown {name} {values[name]!r}; choose one of: {', '.join(map(str, allowed))}")
    for name, floor in minimum.items():
        if name in values and values[name] is not None and values[name] < floor:
            raise ParameterError(f"parameter {name!r} must be at least {floor}, got {values[name]!r}")


# Notebook parameter names that are arguments of lib.data.load (and the argument each one is).
DATASET_PARAMETERS = {"dataset": "name", "data_root": "root", "image_size": "image_size", "n_train": "n_train",
                      "n_val": "n_val", "n_test": "n_test", "difficulty": "difficulty", "val_fraction": "val_fraction",
                      "download": "download"}


def _check_with_owners(values: dict) -> None:
    """The value rules, asked of their owners: TrainConfig.check, lib.data.check_arguments and
    lib.models.check_name. Their one-line errors become ParameterErrors."""
    from lib.config import TrainConfig, setting_names

    settings = {name: values[name] for name in setting_names() if name in values}
    try:
        if settings:
            TrainConfig(**settings).check()
        loading = {argument: values[name] for name, argument in DATASET_PARAMETERS.items() if name in values}
        if loading:
            from lib import data

            loading.setdefault("name", "shapes")
            data.check_arguments(loading.pop("name"), loading.pop("root", None), seed=values.get("seed", 0),
                                 **loading)
        if "model" in values:
            from lib import models

            models.check_name(values["model"])
    except ValueError as error:  # DatasetError and ModelError are ValueErrors too
        raise ParameterError(str(error)) from None
