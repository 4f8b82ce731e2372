"""Running a chapter with parameters, and sweeps over them, with papermill. Defined in chapter 5.

A run executes a copy of a chapter's notebook with new parameter values into an output folder,
leaving the source notebook untouched, and collects every value the notebook glued (myst-nb's
`glue`, which `lib.book.glue` calls) into `metrics.json`, with the parameters, the duration and the
library versions. A sweep runs every combination of a grid of values and gathers all runs into one
table, `sweep.csv` and `sweep.json`.

    python -m lib.run chapters/05_hands_on_project.ipynb -p epochs 3
    python -m lib.run chapters/05_hands_on_project.ipynb --grid lr=0.001,0.003 --grid batch_size=64,128 -p epochs 5

Parameters are checked against the notebook's `parameters` cell before anything runs, with the
rules of `lib.params` (an unknown name, or a value whose type does not fit the default, is refused
with a one-line message and exit code 2). Values given as text are read as papermill's `-p` reads
them: True/False/None, then int, then float, else the text itself. Notebooks are read with
nbformat. The command line itself is `lib.cli.run_main`.
"""

from __future__ import annotations

import ast
import csv
import io
import itertools
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from lib import files, results
from lib import params as params_lib

METRICS_FILE = "metrics.json"
GLUE_MIME_PREFIX = "application/papermill.record/"  # where myst-nb's glue stores a value in an output


class RunError(ValueError):
    """A notebook or a parameter cannot be run. The message (one line) says what to do."""


# ---------------------------------------------------------------------------------------------
# Reading notebooks and parameters


def parse_value(text: str):
    """A command-line value as papermill's `-p NAME VALUE` reads it: True, False, None, int, float,
    or else the text itself."""
    if text in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_notebook(path: Path):
    """The notebook at `path`, read (and upgraded to version 4) by nbformat."""
    import nbformat

    if not path.is_file():
        raise RunError(f"notebook {path} does not exist")
    if path.suffix != ".ipynb":
        raise RunError(f"{path} is not a notebook (.ipynb)")
    try:
        return nbformat.read(path, as_version=4)
    except Exception as error:  # nbformat raises JSON, schema and type errors for damaged files
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RunError(f"{path} is not a readable notebook ({first})") from None


def notebook_defaults(path: str | Path) -> dict:
    """The names and default values of a notebook's cell tagged `parameters`."""
    path = Path(path)
    cells = [c for c in _read_notebook(path).cells
             if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if not cells:
        raise RunError(f"{path} has no cell tagged 'parameters': it cannot be run with parameters")
    try:
        return params_lib.assignments(cells[0].source)
    except SyntaxError as error:
        raise RunError(f"the parameters cell of {path} is not valid Python ({error.msg})") from None


def check_parameters(path: str | Path, values: dict) -> dict:
    """Check `values` against the notebook's parameters cell, before any work; return them with
    ints given for float parameters made floats. Raises ParameterError (one line) for an unknown
    name or a value whose type does not fit the default, with `lib.params`' rules."""
    defaults = notebook_defaults(path)
    unknown = sorted(set(values) - set(defaults))
    if unknown:
        raise params_lib.ParameterError(f"unknown parameter(s) {', '.join(unknown)}; {Path(path).name} takes: "
                                        f"{', '.join(defaults)}")
    namespace = {**defaults, **values}
    params_lib.check(namespace, defaults=defaults)  # the same type and range rules as the notebook's own check
    return {name: namespace[name] for name in values}


def glued_values(notebook: dict) -> dict:
    """Every value a notebook glued, by name: numbers, strings, lists and the like as Python values,
    other text as text, and figures or other rich outputs as a short description."""
    found = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            scrap = output.get("metadata", {}).get("scrapbook") if isinstance(output.get("metadata"), dict) else None
            if not scrap or "name" not in scrap:
                continue
            prefix = scrap.get("mime_prefix", GLUE_MIME_PREFIX)
            payload = {key[len(prefix):]: value for key, value in output.get("data", {}).items()
                       if key.startswith(prefix)}
            if "text/plain" in payload and len(payload) == 1:
                text = payload["text/plain"]
                text = "".join(text) if isinstance(text, list) else text
                try:
                    found[scrap["name"]] = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    found[scrap["name"]] = text
            else:
                kinds = sorted(k for k in payload if k != "text/plain")
                found[scrap["name"]] = f"<{', '.join(kinds) or 'output'}>"
    return found


def _versions() -> dict:
    info = results.provenance()
    for name in ("papermill", "nbformat"):
        try:
            info[f"{name}_version"] = __import__(name).__version__
        except ImportError:
            pass
    return info


def slug(values: dict) -> str:
    """A folder name from parameter values, e.g. 'batch_size=64,lr=0.001'; 'defaults' when empty."""
    if not values:
        return "defaults"
    text = ",".join(f"{k}={v}" for k, v in sorted(values.items()))
    return re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)[:120]


def _default_out(path: Path, values: dict, kind: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    name = f"{kind}-{stamp}" if kind == "sweep" else f"{stamp}-{slug(values)}"
    return Path("runs") / path.stem / name


def _truncate(notebook, until_tag: str):
    for index, cell in enumerate(notebook.cells):
        if until_tag in cell.metadata.get("tags", []):
            truncated = notebook.copy()
            truncated.cells = notebook.cells[:index + 1]
            return truncated
    raise RunError(f"no cell is tagged {until_tag!r}: nothing to stop at")


# ---------------------------------------------------------------------------------------------
# Runs and sweeps


def run_notebook(path: str | Path, params: dict | None = None, out_dir: str | Path | None = None, *,
                 until_tag: str | None = None, cwd: str | Path | None = None, log_output: bool = False,
                 progress: bool = False, kernel_name: str | None = None, checked: bool = False,
                 raise_on_error: bool = True) -> dict:
    """Execute the notebook at `path` with `params` into `out_dir` and return its metrics record.

    Writes `out_dir/<notebook name>` (the executed copy) and `out_dir/metrics.json`: the parameters,
    every glued value (`metrics`), the duration and the versions. The source notebook is only read.
    `until_tag` runs only the cells up to the first one with that tag (a quick run for a sweep).
    The notebook runs in its own folder (as the book runs it) unless `cwd` is given.
    Raises ParameterError or RunError before anything runs when the parameters do not fit, and
    RunError when a cell fails (with `raise_on_error=False` the record's `error` says so instead).
    """
    import nbformat
    import papermill

    path = Path(path)
    params = dict(params or {})
    if not checked:
        params = check_parameters(path, params)
    notebook = _read_notebook(path)
    out = Path(out_dir) if out_dir is not None else _default_out(path, params, "run")
    out.mkdir(parents=True, exist_ok=True)
    source = path
    if until_tag:
        source = out / f"input-{path.name}"
        nbformat.write(_truncate(notebook, until_tag), source)
    output = out / path.name
    started_utc = datetime.now(timezone.utc).isoformat(timespec="seconds")
    started = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(str(source), str(output), parameters=params, log_output=log_output,
                                   progress_bar=progress, kernel_name=kernel_name,
                                   cwd=str(cwd if cwd is not None else path.resolve().parent))
    except papermill.PapermillExecutionError as failure:
        error = f"{failure.ename}: {failure.evalue}"
    seconds = time.perf_counter() - started
    executed = nbformat.read(output, as_version=4) if output.is_file() else {}
    record = {
        "notebook": str(path),
        "output": str(output),
        "parameters": {**notebook_defaults(path), **params},
        "given": params,
        "metrics": glued_values(executed),
        "seconds": seconds,
        "started_utc": started_utc,
        "until_tag": until_tag,
        "error": error,
        "versions": _versions(),
    }
    files.write_json(out / METRICS_FILE, record, default=str)
    if until_tag and source.exists():
        source.unlink()
    if error is not None and raise_on_error:
        raise RunError(f"{path.name} failed with {params}: {error} (see {output})")
    return record


def grid_combinations(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in order: the last name varies fastest."""
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(grid[n] for n in names))]


def sweep(path: str | Path, grid: dict[str, list], fixed: dict | None = None, out_dir: str | Path | None = None,
          *, until_tag: str | None = None, log=print, **options) -> list[dict]:
    """Run the notebook once per combination of `grid` (with `fixed` parameters in every run).

    Every combination is checked before the first run starts. Each run goes to its own folder
    under `out_dir`; the rows (parameters and glued metrics of every run, with its time) are
    written to `out_dir/sweep.csv` and `out_dir/sweep.json` and returned (a glued value named like a
    parameter appears as `glued_<name>`). Options go to
    `run_notebook` (e.g. `log_output`). A run that fails does not stop the sweep: its row's
    `error` says what went wrong.
    """
    path, fixed = Path(path), dict(fixed or {})
    if not grid or any(not isinstance(v, (list, tuple)) or not v for v in grid.values()):
        raise RunError("a sweep needs a grid: each name with a non-empty list of values")
    overlap = sorted(set(grid) & set(fixed))
    if overlap:
        raise RunError(f"{', '.join(overlap)} given both as fixed and in the grid")
    combos = [{**fixed, **c} for c in grid_combinations({k: list(v) for k, v in grid.items()})]
    combos = [check_parameters(path, c) for c in combos]
    out = Path(out_dir) if out_dir is not None else _default_out(path, {}, "sweep")
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, values in enumerate(combos, 1):
        swept = {k: values[k] for k in grid}
        if log:
            log(f"run {i}/{len(combos)}: {slug(swept)}")
        folder = out / f"{i:03d}-{slug(swept)}"
        record = run_notebook(path, values, folder, until_tag=until_tag, checked=True, raise_on_error=False,
                              **options)
        if record["error"] and log:
            log(f"run {i} failed: {record['error']} (see {record['output']})")
        given = {**{k: values[k] for k in grid}, **{k: values[k] for k in fixed}}
        glued = {(f"glued_{k}" if k in given else k): v for k, v in record["metrics"].items() if _is_scalar(v)}
        rows.append({**given, **glued,
                     "seconds": round(record["seconds"], 2), "error": record["error"] or "", "folder": str(folder)})
    write_table(rows, out)
    if log:
        log(format_table(rows))
    return rows


def _is_scalar(value) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def write_table(rows: list[dict], out_dir: str | Path) -> None:
    """Write rows as `sweep.csv` (one column per key seen in any row) and `sweep.json`."""
    out = Path(out_dir)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    files.write_text(out / "sweep.csv", text.getvalue())
    files.write_json(out / "sweep.json", rows, default=str)


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A fixed-width text table of the rows (the `folder` column left out)."""
    if not rows:
        return "(no runs)"
    columns = columns or [k for k in dict.fromkeys(k for row in rows for k in row)
                          if k != "folder" and not (k == "error" and not any(row.get(k) for row in rows))]
    text = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in text)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in text]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """`python -m lib.run` (defined in `lib.cli`)."""
    from lib import cli

    return cli.run_main(argv)


if __name__ == "__main__":
    sys.exit(main())
