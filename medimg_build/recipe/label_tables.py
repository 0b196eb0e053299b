"""A dataset's label tables (CSV) as a recipe names them: read as text, one release of a
renamed table chosen, renamed columns read under the recipe's name, and every column a
recipe names required -- a missing column is an error, never an empty one."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..errors import RecipeError
from .paths import inside


def read_label_table(path: Path, setting: str = "source.table") -> pd.DataFrame:
    """A CSV label table, every cell as text ("" where empty) so that no ID loses its
    leading zeros and "NA" stays a value until a recipe says what it means. ``setting``
    is the recipe key naming it, for the refusal when it is not there."""
    if not path.is_file():
        raise RecipeError(path, "label table not found",
                          hint=f"check --source and the recipe's {setting}")
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if not head.strip():
        raise RecipeError(path, "label table is empty (no header row)",
                          hint="the download or copy was interrupted; fetch the table again")
    if b"\0" in head:
        # pandas would read some binaries as one garbled column, then complain about
        # missing columns: say what the file is instead.
        raise RecipeError(path, "is binary, not a CSV text table (it holds NUL bytes)",
                          hint="check the file is the dataset's CSV table")
    try:
        with warnings.catch_warnings():
            # index_col=False: rows with one field more than the header (a trailing comma
            # on rows only) would otherwise shift every column by one, silently: the
            # image names would be read as the first column's index. pandas then warns.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True,
                               index_col=False)
    except pd.errors.ParserWarning:
        raise RecipeError(path, "has rows with more fields than its header names (a comma "
                          "more at the end of rows than of the header?)",
                          hint="make the header and the rows agree, e.g. add the trailing "
                          "comma to the header") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise RecipeError(path, f"cannot be read as CSV ({type(error).__name__})",
                          hint="check the file is the dataset's CSV table") from error


def chosen_table(names: str | Sequence[str], root: Path, setting: str
                 ) -> tuple[Path, dict[str, str]]:
    """The label table a recipe names: one file, or a list of the names a table has in
    different releases, most preferred first (NIH's Data_Entry_2017_v2020.csv, then
    Data_Entry_2017.csv). The first present is read; the others present are returned as
    {name: reason} to be reported, so a reader knows which release built the store."""
    if isinstance(names, str):
        return inside(root, names, setting), {}
    paths = [inside(root, name, setting) for name in names]
    present = [(name, path) for name, path in zip(names, paths) if path.is_file()]
    if not present:
        # Quoted as the recipe writes the list (the parsed recipe holds a tuple).
        raise RecipeError(root, f"label table not found: none of {list(names)} is there",
                          hint=f"check --source and the recipe's {setting}")
    (chosen, path), others = present[0], present[1:]
    reason = f"label table not read: {chosen} is preferred ({setting} lists it first)"
    return path, {name: reason for name, _ in others}


def with_column_aliases(table: pd.DataFrame, aliases: dict[str, list[str]]) -> pd.DataFrame:
    """``table`` with each column a recipe names (an ``aliases`` key) under that name
    when the table has one of its other names instead (NIH's "Patient Gender", renamed
    "Patient Sex" in the 2020 release). A table that has the recipe's own name keeps it."""
    renames = {}
    for name, others in aliases.items():
        found = [other for other in others if other in table.columns]
        if name not in table.columns and found:
            renames[found[0]] = name
    return table.rename(columns=renames) if renames else table


def require_columns(table: pd.DataFrame, columns: list[str], path: Path,
                    aliases: dict[str, list[str]] | None = None) -> None:
    """One line naming the table, each missing column (with the other names it was
    looked for under) and the columns the table has."""
    missing = [c for c in dict.fromkeys(columns) if c not in table.columns]
    if missing:
        named = ", ".join(repr(c) + "".join(f" or {o!r}" for o in (aliases or {}).get(c, []))
                          for c in missing)
        raise RecipeError(path, f"missing column{'s' * (len(missing) > 1)} {named} (named "
                          f"by the recipe); it has {list(table.columns)}",
                          hint="fix the recipe's column names (or its source.column_aliases), "
                          "or the table")
