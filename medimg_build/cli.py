"""The ``medimg-build`` command: build, build-collection, demo, inspect, validate,
verify, snapshot, export, export-table, report, catalog, recipes.

User mistakes end as one line on stderr (``medimg-build: error: <file>: <problem>``)
and exit code 2; a build with failed cases exits 1 unless --allow-failures."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from . import __version__
from .errors import MedimgError, MedimgWarning, RecipeError, one_line
from .limits import DEFAULT_MAX_VOXELS

# ``--pyramid`` without a number: full, 1/2, 1/4 and 1/8 in-plane (a 512 x 512 CT slice
# down to 64 x 64, a thumbnail a viewer fetches in one request).
PYRAMID_LEVELS = 4


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.run(args)
    except MedimgError as error:
        print(f"medimg-build: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `inspect STORE | head`: the reader left, which is no error of ours. Python's
        # advice (docs: signal, "Note on SIGPIPE"): point stdout at devnull, so the
        # flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:
        if error.errno not in FAULT_FIXES:
            raise  # not a fault of the machine: a bug, whose traceback is wanted
        print(f"medimg-build: error: {fault_line(error, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("medimg-build: interrupted", file=sys.stderr)
        return 130


_PYTHON_SHOWWARNING = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our warnings as one line, like our errors; any other as Python shows it."""
    if issubclass(category, MedimgWarning):
        print(f"medimg-build: warning: {one_line(str(message))}", file=sys.stderr)
    else:
        _PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)


def _installed_version() -> str:
    try:
        return version("medimg-build")
    except PackageNotFoundError:  # a checkout on PYTHONPATH that pip never installed
        return f"{__version__} (not installed)"


# Faults of the machine, not of the program, that any writing command can meet: what
# to do about each, and how to go on ({again}).
FAULT_FIXES = {
    errno.ENOSPC: "no space left on the device: free space there{again}",
    errno.EDQUOT: "disk quota exceeded: free space within the quota{again}",
    errno.EROFS: "read-only file system: write the output to a writable location",
    errno.EACCES: "permission denied: check its permissions, or write the output elsewhere",
    errno.EPERM: "operation not permitted: check its permissions, or write the output "
                 "elsewhere",
}


def fault_line(error: OSError, args: argparse.Namespace) -> str:
    """One line naming the file of an OSError in FAULT_FIXES and the fix."""
    path = error.filename or getattr(args, "out", None) or getattr(args, "store", None)
    fix = FAULT_FIXES[error.errno].format(again=_again(args))
    return f"{path}: {fix}" if path else fix


def _again(args: argparse.Namespace) -> str:
    """How to go on after a fault is fixed: a Zarr build resumes where it stopped."""
    if getattr(args, "command", None) != "build":
        return ", then run it again"
    from .store.formats import pick_format

    return pick_format(args.out, args.format, writing=True).again_after_fault()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medimg-build",
        description="Turn medical-image datasets into harmonized, chunked Zarr stores.")
    parser.add_argument("--version", action="version",
                        version=f"%(prog)s {_installed_version()}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND", dest="command")

    build = commands.add_parser("build", help="build a store from a recipe and a source folder",
                                description="Build a store from RECIPE (a YAML path or the "
                                "name of a bundled recipe) and the dataset in --source.")
    build.add_argument("recipe", metavar="RECIPE")
    build.add_argument("--source", required=True, metavar="DIR", help="the downloaded dataset")
    build.add_argument("--out", required=True, metavar="STORE", help="the store to create")
    build.add_argument("--workers", type=int, default=_default_workers(), metavar="N",
                       help="local Dask worker processes (default: every core, or "
                       "$MEDIMG_WORKERS; 1 builds in this process, without a cluster)")
    build.add_argument("--scheduler", metavar="ADDRESS",
                       help="address of a running Dask distributed scheduler")
    build.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a recipe value, e.g. harmonize.spacing=[1,1,1]")
    build.add_argument("--max-voxels", type=_positive_int, metavar="N",
                       help="refuse any image, read or harmonized, of more than N values "
                       f"(voxels x channels; default {DEFAULT_MAX_VOXELS:,}); the recipe's "
                       "limits.max_voxels")
    build.add_argument("--key", help="secret key for pseudonymizing patient IDs "
                       "(default: $MEDIMG_PSEUDONYM_KEY)")
    build.add_argument("--format", choices=("zarr", "hdf5"), default=None,
                       help="zarr (a directory) or hdf5 (one file, same schema); default: "
                       "hdf5 when STORE ends in .h5/.hdf5, else zarr")
    build.add_argument("--pyramid", nargs="?", type=int, const=PYRAMID_LEVELS, default=None,
                       metavar="LEVELS", help="volumes layout: resolution levels for "
                       f"OME-Zarr viewers, LEVELS in all (default {PYRAMID_LEVELS}), each "
                       "halved in-plane, and along z once slices are at most twice the "
                       "pixel size")
    build.add_argument("--overwrite", action="store_true", help="replace an existing store")
    build.add_argument("--resume", action="store_true",
                       help="finish the store an interrupted build of the same recipe and "
                       "source left at --out, redoing only its unfinished cases")
    build.add_argument("--allow-failures", action="store_true",
                       help="exit 0 even when some cases failed")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(run=_build)

    demo = commands.add_parser("demo", help="build demo stores from real sample images",
                               description="Build demo stores from real images shipped with "
                               "pydicom and nibabel, plus ../shared/data where present.")
    demo.add_argument("--out", default="demo-output", metavar="DIR")
    demo.add_argument("--shared-data", metavar="DIR",
                      help="reference data folder (default: $MEDIMG_SHARED_DATA or ../shared/data)")
    demo.add_argument("--no-shared-data", action="store_true",
                      help="use only the sample images shipped with the dependencies")
    demo.set_defaults(run=_demo)

    _store_command(commands, "inspect", _inspect, help="describe a store")
    _store_command(
        commands, "validate", _validate,
        help="check a store against its schema and invariants",
        description="Check STORE's root attributes against schema/store.schema.json and its "
        "arrays and labels against the layout's invariants; exit 1 listing every violation.")
    _store_command(
        commands, "verify", _verify,
        help="re-read a store and check it against its content manifest",
        description="Re-read every object of STORE (a directory, a .zip snapshot or an HDF5 "
        "file) and compare it with the manifest written at build time; exit 1 listing "
        "every changed, missing or extra object.")
    snapshot = _store_command(
        commands, "snapshot", _snapshot, help="pack a store into one deterministic .zip",
        description="Pack STORE into OUT.zip (entries sorted, stored, fixed timestamps: "
        "equal stores give identical bytes); open_store and verify read it directly.")
    snapshot.add_argument("out", metavar="OUT.zip")
    export = _store_command(commands, "export-table", _export_table,
                            help="write a store's case table to Parquet")
    export.add_argument("--out", metavar="FILE.parquet",
                        help="default: <STORE>.cases.parquet next to the store")
    cases_out = _store_command(
        commands, "export", _export,
        help="write a store's cases as NIfTI files or as an nnU-Net v2 raw dataset",
        description="Write the cases of STORE (all, or those of --case) into --out: "
        "'--to nifti' as <case>.nii.gz (+ <case>_mask.nii.gz, + <case>.json, the steps "
        "and what the export did), '--to nnunet' as the nnU-Net v2 raw dataset "
        "DIR/DatasetNNN_<name> (dataset.json, imagesTr, labelsTr, imagesTs, "
        "splits_final.json). Intensities are those before the store's normalization "
        "(refused where a clip lost values), on the harmonized grid.")
    cases_out.add_argument("--to", required=True, choices=("nifti", "nnunet"))
    cases_out.add_argument("--out", required=True, metavar="DIR",
                           help="nifti: a new or empty folder; nnunet: the nnUNet_raw "
                           "folder that gets DatasetNNN_<name>")
    cases_out.add_argument("--case", dest="cases", action="extend", nargs="+", default=None,
                           metavar="ID", help="export only these cases (default: all)")
    cases_out.add_argument("--keep-normalization", action="store_true",
                           help="write the stored (normalized) values as they are")
    cases_out.add_argument("--original-grid", action="store_true",
                           help="put each case back on its source file's grid (the image "
                           "resampled with the store's interpolation, a mask by nearest "
                           "neighbour; a grid that is only permuted is exact)")
    cases_out.add_argument("--dataset-id", type=int, default=500, metavar="NNN",
                           help="nnunet: the dataset id, 1..999 (default 500, the first of "
                           "nnU-Net's custom ids)")
    cases_out.add_argument("--dataset-name", metavar="NAME",
                           help="nnunet: the dataset name (default: the store's dataset)")
    report = _store_command(
        commands, "report", _report, help="write a visual QC report of a store (static HTML)",
        description="Write a self-contained HTML report of STORE into --out: dataset card, "
        "counts per split and class, build failures, thumbnails of a seeded sample of "
        "cases per split and class with labels overlaid and anatomical directions marked, "
        "intensity histograms and spacing/shape distributions.")
    report.add_argument("--out", metavar="DIR",
                        help="default: <STORE>.report next to the store")

    recipes = commands.add_parser(
        "recipes", help="list the bundled recipes, or show one",
        description="List the bundled recipes; `recipes show NAME` prints one (a bundled "
        "name or a YAML path) as written, after the path it was read from.")
    recipes.set_defaults(run=_recipes)
    shown = recipes.add_subparsers(dest="recipes_command", metavar="show").add_parser(
        "show", help="print a recipe and its path",
        description="Print recipe NAME (a bundled name or a YAML path) as written, comments "
        "included, after a first line naming the file it was read from.")
    shown.add_argument("name", metavar="NAME")
    shown.set_defaults(run=_show_recipe)

    catalog = commands.add_parser(
        "catalog", help="one table over the cases of many stores",
        description="Summarize the cases of every STORE (paths, URLs or catalog files "
        "listing them) and count those matching --where.")
    catalog.add_argument("stores", nargs="+", metavar="STORE")
    catalog.add_argument("--where", metavar="SQL",
                         help="a DuckDB condition over the table 'cases', e.g. \"modality = "
                         "'CT' and has_segmentation\"")
    catalog.add_argument("--out", metavar="FILE.parquet",
                         help="write the (matching) catalog rows to Parquet")
    catalog.add_argument(
        "--storage-options", type=_json_object, default=None, metavar="JSON",
        help="fsspec options for the stores given as URLs, as for inspect (a catalog "
             "file's entry may give its own)")
    catalog.set_defaults(run=_catalog)

    collection = commands.add_parser(
        "build-collection", help="build several stores and a catalog of them",
        description="Build every store listed in COLLECTION (YAML: stores: [{recipe, "
        "source, out, set}, ...]) into --out, and write DIR/catalog.yaml listing them.")
    collection.add_argument("collection", metavar="COLLECTION.yaml")
    collection.add_argument("--out", required=True, metavar="DIR")
    collection.add_argument("--workers", type=int, default=_default_workers(), metavar="N",
                            help="local Dask worker processes per build (default: every "
                            "core, or $MEDIMG_WORKERS)")
    collection.add_argument("--overwrite", action="store_true",
                            help="replace existing stores")
    collection.add_argument("--allow-failures", action="store_true",
                            help="exit 0 even when some cases or stores failed")
    collection.add_argument("--quiet", action="store_true", help="no progress bars")
    collection.set_defaults(run=_build_collection)
    return parser


def _store_command(commands, name: str, run: Callable[[argparse.Namespace], int],
                   **texts: str) -> argparse.ArgumentParser:
    """A command that reads the store (path or URL) named by its first argument."""
    command = commands.add_parser(name, **texts)
    command.add_argument("store", metavar="STORE")
    command.add_argument(
        "--storage-options", type=_json_object, default=None, metavar="JSON",
        help='fsspec options for a URL, e.g. \'{"anon": true}\' or \'{"client_kwargs": '
             '{"endpoint_url": "https://..."}}\' (credentials come from the environment)')
    command.set_defaults(run=run)
    return command


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _default_workers() -> int:
    """Every core of this machine, unless $MEDIMG_WORKERS says otherwise."""
    configured = os.environ.get("MEDIMG_WORKERS")
    return int(configured) if configured else max(1, os.cpu_count() or 1)


def _positive_int(text: str) -> int:
    """An integer >= 1, written plainly or with underscores (``1_000_000_000``)."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is not a positive number")
    return number


def _build(args: argparse.Namespace) -> int:
    from .recipe.build import build_store
    from .recipe.model import load_recipe

    recipe = load_recipe(args.recipe)
    if args.set:
        recipe = recipe.with_overrides(_overrides(args.set, recipe.path))
    if args.max_voxels is not None:
        recipe = recipe.with_overrides({"limits": {"max_voxels": args.max_voxels}})
    report = build_store(recipe, args.source, args.out, workers=args.workers,
                         scheduler=args.scheduler, overwrite=args.overwrite, key=args.key,
                         progress=not args.quiet, format=args.format, resume=args.resume,
                         pyramid_levels=args.pyramid, allow_failures=args.allow_failures)
    print(report.summary())
    return 0 if report.ok or args.allow_failures else 1


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.out, args.shared_data, use_shared=not args.no_shared_data)


def _inspect(args: argparse.Namespace) -> int:
    from .describe import describe_store

    print(describe_store(args.store, args.storage_options))
    return 0


def _validate(args: argparse.Namespace) -> int:
    from .store.validate import store_summary, validate_store

    options = args.storage_options
    return _problems_or(args.store, validate_store(args.store, options),
                        lambda: f"valid ({store_summary(args.store, options)})")


def _verify(args: argparse.Namespace) -> int:
    from .store.opening import verified_summary, verify_store

    def verified() -> str:
        summary = verified_summary(args.store, args.storage_options)
        return f"verified {summary['n_objects']} objects, content sha256 " \
               f"{summary['content_sha256']}"

    return _problems_or(args.store, verify_store(args.store, args.storage_options), verified)


def _problems_or(store: str, problems: list, success: Callable[[], str]) -> int:
    """Each problem on its own line and exit 1, or the one-line success and exit 0."""
    for problem in problems:
        print(f"{store}: {problem}")
    if problems:
        return 1
    print(f"{store}: {success()}")
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    from .store.opening import snapshot_store, verified_summary

    entries = snapshot_store(args.store, args.out, args.storage_options)
    print(f"{args.out}: snapshot of {args.store} ({entries} entries, content sha256 "
          f"{verified_summary(args.out)['content_sha256']})")
    return 0


def _export_table(args: argparse.Namespace) -> int:
    from .store.export import export_table

    where, rows = export_table(args.store, args.out, args.storage_options)
    print(f"{where}: case table of {args.store} ({rows} rows)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_store

    result = export_store(args.store, args.to, args.out, args.cases,
                          keep_normalization=args.keep_normalization,
                          original_grid=args.original_grid, dataset_id=args.dataset_id,
                          dataset_name=args.dataset_name,
                          storage_options=args.storage_options)
    print(result.summary(args.store, args.to))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .report import write_report

    index = write_report(args.store, args.out, storage_options=args.storage_options)
    print(f"{index}: QC report of {args.store}")
    return 0


def _recipes(args: argparse.Namespace) -> int:
    from .recipe.model import bundled_recipes

    rows = [("recipe", "modality", "organ", "layout", "labels", "license")]
    for recipe in bundled_recipes():
        labels = recipe.labels
        kinds = [kind for kind, declared in (("classification", labels.classification),
                                             ("segmentation", labels.segmentation),
                                             *labels.annotations().items()) if declared]
        rows.append((recipe.name, recipe.modality, recipe.organ, recipe.layout,
                     ", ".join(kinds) or "-", "?" if recipe.license is None else recipe.license))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1])
    return 0


def _show_recipe(args: argparse.Namespace) -> int:
    import difflib

    from .recipe.model import bundled_recipes, load_recipe

    try:
        recipe = load_recipe(args.name)
    except RecipeError:
        names = [recipe.name for recipe in bundled_recipes()]
        close = difflib.get_close_matches(args.name, names, n=1, cutoff=0.6)
        if not close:
            raise
        raise RecipeError(args.name, "no such recipe file or bundled recipe",
                          hint=f"did you mean {close[0]}?") from None
    print(f"# {recipe.name}: {recipe.path}")
    print(Path(recipe.path).read_text(encoding="utf-8"), end="")
    return 0


def _catalog(args: argparse.Namespace) -> int:
    from .catalog import Catalog, describe_subset
    from .store.export import check_parquet_name

    if args.out:
        check_parquet_name(args.out)  # before every store is opened
    catalog = Catalog.open(args.stores, args.storage_options)
    print(catalog.summary())
    rows = catalog.cases
    if args.where:
        rows = catalog.where(args.where)
        print(f"where {args.where}: {describe_subset(rows)}")
    if args.out:
        catalog.to_parquet(args.out, rows)
        print(f"{args.out}: {len(rows)} catalog row(s)")
    return 0


def _build_collection(args: argparse.Namespace) -> int:
    from .catalog import build_collection

    reports, errors = build_collection(args.collection, args.out, workers=args.workers,
                                       overwrite=args.overwrite, progress=not args.quiet)
    for report in reports:
        print(report.summary())
    for out, error in errors.items():
        print(f"{out}: not built: {error}")
    print(f"{args.out}/catalog.yaml: {len(reports)} store(s) built, {len(errors)} not built")
    failed = errors or any(not report.ok for report in reports)
    return 1 if failed and not args.allow_failures else 0


def _overrides(pairs: list[str], recipe_path: str | None) -> dict:
    """``a.b=1`` pairs into a nested mapping; values are YAML (numbers, lists...). A key
    no recipe has is refused with the closest real one."""
    from .recipe.override_keys import check_key

    merged: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise MedimgError(recipe_path, f"--set {pair!r} is not KEY=VALUE",
                              hint="e.g. --set harmonize.spacing=[1,1,1]")
        check_key(key, recipe_path)
        node = merged
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _yaml_value(key, text, recipe_path)
    return merged


SHOWN_VALUE = 200  # characters of a bad --set value quoted back


def _yaml_value(key: str, text: str, recipe_path: str | None):
    from .yaml_input import load_yaml

    try:
        return load_yaml(text)
    except yaml.YAMLError as error:
        problem = str(getattr(error, "problem", None) or "invalid syntax")
        shown = one_line(repr(text), SHOWN_VALUE)
        raise RecipeError(recipe_path, f"--set {key}: the value {shown} is not YAML "
                          f"({one_line(problem, SHOWN_VALUE)})",
                          hint="quote text, and write lists "
                          "as [1,1,1] and mappings as {a: 1}") from None


if __name__ == "__main__":
    sys.exit(main())
