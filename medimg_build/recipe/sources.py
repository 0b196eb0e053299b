"""Find the cases of a source folder as a recipe describes them. Nothing is read but
folder listings and label tables: pixels are read later, one case at a time."""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ImageReadError, RecipeError, shown_items
from ..io import reader_for
from ..io.dicom import read_dicom
from ..io.dicom_discovery import DicomSeriesRef, discover_series
from ..labels.masks import check_flag_values
from ..privacy import (identifying_values, pseudonym_key, pseudonymize,
                       readable_identity, scrub)
from ..store import schema
from ..store.annotation_tables import GROUP_NAMES
from ..store.manifest import MANIFEST
from .label_tables import (chosen_table, read_label_table, require_columns,
                           with_column_aliases)
from .model import Recipe
from .paths import from_template, inside, inside_glob, outside_problem, source_root, stored_text
from .sections import DicomTree, ImageTable, VolumeFolder
from .source_report import not_an_image, with_masks_reported, with_system_files_beside
from .table_spacing import pixel_size_note

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_DOUBLE_SUFFIXES = (".nii.gz", ".tar.gz")
SAFE_HINT = "case ids may use letters, digits and . _ + - only"
# A case id names a group, so a folder (volumes): 128 leaves room under the
# 255-byte file-name limit of ext4, APFS and NTFS (a UTF-8 byte each: ids are ASCII).
MAX_CASE_ID_CHARS = 128
# Names of the store's own groups and files (compared without case: macOS and Windows
# folders ignore it). A case group of that name would overwrite, or be taken for, one.
# Array names (case, image, mask...) are not among them: no case group sits next to one.
STORE_NAMES = frozenset({"zarr.json", "c", schema.CASES_GROUP, schema.LABELS_GROUP,
                         MANIFEST, *GROUP_NAMES})
_STORE_NAME_PATTERN = re.compile(
    rf"{schema.LEVEL_PREFIX}\d+|zarr\..*|.*\.partial", re.IGNORECASE)


@dataclass(frozen=True)
class CaseSource:
    """Where one case comes from. ``fields`` holds its raw label-table row, if any."""

    case_id: str
    image_path: Path
    mask_path: Path | None = None
    patient_id: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    series: DicomSeriesRef | None = None  # a series found by DICOM discovery
    channels: tuple[Path, ...] = ()  # several files stacked as channels (BraTS' sequences)
    channel_names: tuple[str, ...] = ()
    channels_onto_first: bool = False  # resample channels on other grids (ADC onto T2W)
    loader: str | None = None  # a registered loader (recipe/parsers) instead of read_image
    loader_args: dict[str, Any] = field(default_factory=dict)
    mask_loader: str | None = None  # the same for the mask (several files into one map)
    mask_loader_args: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, list[dict]] = field(default_factory=dict)  # kind -> table rows


@dataclass(frozen=True)
class SourceListing:
    """The cases of a source, what was found but is not a case (path -> reason), what
    was built but lacks something declared (image path -> what is missing, e.g. its
    mask), and notes on what the listing changed (labels a correction table replaced).
    The build report counts and names them: nothing found is dropped in silence."""

    cases: list[CaseSource]
    skipped: dict[str, str] = field(default_factory=dict)
    incomplete: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # The case each ``incomplete`` entry is (where -> case id): a case that then fails
    # is reported as failed only (BuildReport.settle).
    incomplete_cases: dict[str, str] = field(default_factory=dict)


def discover_cases(recipe: Recipe, source_dir: str | Path,
                   key: bytes | None = None) -> list[CaseSource]:
    return list_sources(recipe, source_dir, key).cases


def list_sources(recipe: Recipe, source_dir: str | Path,
                 key: bytes | None = None) -> SourceListing:
    """The cases of ``source_dir``; ``key`` pseudonymizes case ids that would otherwise
    carry a patient identifier (DICOM folders named after the PatientID, as TCIA's).
    Their paths start with the resolved source folder (``paths.source_root``)."""
    root = source_root(source_dir)
    from .image_folder import image_folder
    from .parsers import run_parser

    finders = {"volume_folder": _volume_folder, "image_table": _image_table,
               "dicom_tree": _dicom_tree, "image_folder": image_folder, "parser": run_parser}
    listing = finders[recipe.source.kind](recipe.source, root, key or pseudonym_key()[0])
    if isinstance(listing, list):
        listing = SourceListing(listing)
    if not listing.cases:
        # One skipped file with its reason says more than their number: often that
        # --source is one folder above the download's own top folder.
        example = next(iter(listing.skipped.items()), None)
        why = f"; e.g. {example[0]}: {example[1]}" if example else ""
        raise RecipeError(root, f"no cases found with {recipe.source.kind} pattern "
                          f"{recipe.source.searched!r}"
                          f" ({len(listing.skipped)} files skipped{why})",
                          hint="check --source and the recipe's source section")
    _check_unique(listing.cases, root)
    # Reasons are stored (counted in the build report): "duplicate of <path>" relative.
    return dataclasses.replace(listing, skipped={
        where: stored_text(reason, root) for where, reason in listing.skipped.items()},
        incomplete={where: stored_text(reason, root)
                    for where, reason in listing.incomplete.items()})


def case_id_from_name(path: Path, rule: str = "stem") -> str:
    name = path.name
    if rule == "name":
        return name
    for suffix in _DOUBLE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem if path.is_file() or "." in name else name


def _volume_folder(source: VolumeFolder, root: Path, key: bytes) -> SourceListing:
    rule = source.case_id
    mask_template = source.masks
    cases, skipped, looked_for = [], {}, []
    for path in inside_glob(root, source.images, "source.images"):
        where = path.relative_to(root).as_posix()
        if (problem := not_an_image(path)) is not None:
            skipped[where] = problem  # reported: a notes.txt is no failed case
            continue
        case_id = str(path.relative_to(root)).replace("/", "_") if rule == "path" \
            else case_id_from_name(path, rule)
        if (problem := case_id_problem(case_id)) is not None:
            # One badly named file is that file's problem, not the whole build's.
            skipped[where] = problem
            continue
        channels = tuple(from_template(root, t, "source.channels", case_id=case_id, path=where)
                         for t in source.channels)
        if channels and not any(channel.exists() for channel in channels):
            # A case folder holding only its mask: no case, and its mask unpaired.
            skipped[where] = "no image: none of its source.channels files found"
            continue
        mask, layers = masks_of(mask_template, root, "source.masks",
                                source.masks_overlap, case_id=case_id, path=where)
        looked_for += mask_candidates(mask_template, root, "source.masks", case_id=case_id,
                                      path=where)
        # patient_pattern: one patient's several time points (BraTS-GLI-00005-100, -101).
        patient = patient_from_name(source.patient_pattern, case_id, path) or (
            case_id if source.patient_id == "case_id" else None)
        cases.append(CaseSource(private_case_id(case_id, path, key), path, mask, patient,
                                channels=channels, **layers))
    skipped = with_system_files_beside(skipped, [case.image_path for case in cases], root)
    return with_masks_reported(SourceListing(cases, skipped), root, mask_template, looked_for)


def _image_table(source: ImageTable, root: Path, key: bytes) -> SourceListing:
    """One case per table row whose image exists; rows without an image and images
    without a row are reported (with their number), not silently dropped."""
    table_path, skipped = chosen_table(source.table, root, "source.table")
    aliases = source.column_aliases
    table = with_column_aliases(read_label_table(table_path), aliases)
    wanted = [source.image_column] + [c for c in [source.patient_column,
                                                  source.mask_column] if c]
    # Every column the recipe names, or a silently empty case-table column (issue 16).
    require_columns(table, wanted + list(source.columns), table_path, aliases)
    note = pixel_size_note(source.pixel_spacing, table, table_path.name)
    table_name = table_path.relative_to(root).as_posix()
    files: dict[str, Path] = {}
    for path in inside_glob(root, source.images, "source.images"):
        # Before the name check: __MACOSX/images_001/images/._00000001_000.png is a Mac
        # zip's copy of the fork beside the image, not a second image of that name.
        if (problem := not_an_image(path)) is not None:
            skipped[path.relative_to(root).as_posix()] = problem
            continue
        if path.name in files:
            raise RecipeError(path, f"two image files are named {path.name!r} "
                              f"(the other is {files[path.name]})",
                              hint="narrow the recipe's source.images glob")
        files[path.name] = path
    cases, listed = [], set()
    for number, row in enumerate(table.to_dict(orient="records"), start=1):
        # image_suffix: tables that name images without their extension (Kaggle DR's
        # trainLabels.csv says "10_left" for train/10_left.jpeg).
        listed_as = str(row[source.image_column]).strip()
        name = listed_as + source.image_suffix
        if name in listed and name in files:
            raise RecipeError(table_path, f"lists image {name!r} in two rows",
                              hint="one row per image: remove the duplicate row")
        listed.add(name)
        if name not in files:
            # ABIDE names every subject without data "no_filename": each row is counted.
            where = f"{table_name}: {name}"
            skipped[where if where not in skipped else f"{where} (row {number})"] = \
                _missing_image_reason(name)
            continue
        patient = row.get(source.patient_column or "", None) or \
            patient_from_name(source.patient_pattern, listed_as, table_path)
        case_id = case_id_from_name(Path(name))
        if (problem := case_id_problem(case_id)) is not None:
            skipped[f"{table_name}: {name}"] = problem
            continue
        listed_mask = str(row[source.mask_column]).strip() if source.mask_column else ""
        if (problem := outside_problem(listed_mask)) is not None:  # the row's refusal
            skipped[f"{table_name}: {name}"] = f"mask {listed_mask!r} {problem}, not read"
            continue
        cases.append(CaseSource(private_case_id(case_id, files[name], key), files[name],
                                _table_mask(source, row, case_id, root), patient or None, row))
    for name, path in files.items():
        if name not in listed:
            skipped[str(path.relative_to(root))] = "image without a table row"
    if not cases and listed:
        example = next(iter(sorted(listed)))
        raise RecipeError(table_path, f"none of its {len(listed)} rows names an image found "
                          f"with {source.images!r} under {root} ({len(files)} image files "
                          f"found; first row names {example!r})",
                          hint="check --source and the recipe's source.images glob")
    skipped = with_system_files_beside(skipped, files.values(), root)
    return SourceListing(cases, skipped, notes=[note] if note else [])


def masks_of(spec: str | dict[str, str] | None, root: Path, setting: str,
             overlap: str = "higher_wins", /, **names: str
             ) -> tuple[Path | None, dict[str, Any]]:
    """A case's mask from a recipe's ``masks`` (the recipe key ``setting``): one path
    template (the mask, if the file exists), or {label value: template} layers combined
    into one map by the rule ``overlap`` (labels/masks.py; all must exist; a case missing
    a layer has no mask). Returns (mask path, CaseSource loader fields). Templates stay
    inside ``root`` (paths.inside)."""
    if not spec:
        return None, {}
    candidates = mask_candidates(spec, root, setting, **names)
    if isinstance(spec, str):
        return (candidates[0] if candidates[0].exists() else None), {}
    if overlap == "flags":
        check_flag_values([int(value) for value in spec])
    if not all(file.exists() for file in candidates):
        return None, {}
    layers = [[int(value), str(file)] for value, file in zip(_layer_values(spec), candidates)]
    args = {"layers": layers} | ({"overlap": overlap} if overlap != "higher_wins" else {})
    return Path(layers[-1][1]), {"mask_loader": "combined_masks", "mask_loader_args": args}


def mask_candidates(spec: str | dict[str, str] | None, root: Path, setting: str,
                    **names: str) -> list[Path]:
    """The mask files a recipe's ``masks`` names for one case (whether they exist or
    not): one, or one per layer in label-value order."""
    if not spec:
        return []
    if isinstance(spec, str):
        return [from_template(root, spec, setting, **names)]
    return [from_template(root, spec[value], f"{setting}.{value}", **names)
            for value in _layer_values(spec)]


def _layer_values(spec: dict[str, str]) -> list[str]:
    return sorted(spec, key=int)


def patient_from_name(pattern: str | None, name: str, where: Path,
                      setting: str = "source.patient_pattern") -> str | None:
    """The patient part of a case or image name by the recipe's regular expression
    ``setting`` (Kaggle DR's ``10_left`` -> ``10``; ACDC's ``patient001_frame12`` ->
    ``patient001``): its group ``patient``, else its first group."""
    if not pattern:
        return None
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise RecipeError(where, f"{setting} {pattern!r} is no regular expression: {error}",
                          hint="e.g. '^(?P<patient>.+)-\\d{3}$'") from None
    if "patient" not in compiled.groupindex and compiled.groups == 0:
        raise RecipeError(where, f"{setting} {pattern!r} has no group (?P<patient>...)",
                          hint="name the patient part: '^(?P<patient>.+)-\\d{3}$'")
    match = compiled.search(name)
    if match is None:
        raise RecipeError(where, f"name {name!r} does not match {setting} {pattern!r}",
                          hint="fix the pattern, or the name")
    return match.groupdict().get("patient") or match.group(1)


def _table_mask(source: ImageTable, row: dict[str, Any], case_id: str,
                root: Path) -> Path | None:
    """A listed mask must exist (a missing one fails its case); a templated one is
    optional, as masks often exist for a subset of a dataset. (A listed mask outside
    the source folder has refused its row before.)"""
    if source.mask_column:
        listed = str(row[source.mask_column]).strip()
        return root / listed if listed else None
    if source.masks:
        candidate = from_template(root, source.masks, "source.masks", case_id=case_id)
        return candidate if candidate.exists() else None
    return None


def _dicom_tree(source: DicomTree, root: Path, key: bytes) -> SourceListing:
    """One case per DICOM series (or split part of one), named by a keyed hash of its
    UIDs: stable across builds with the same key, and no UID in the store."""
    tree = inside(root, source.root, "source.root")
    discovery = discover_series(tree)
    skipped = {str(s.path.relative_to(root)): s.reason for s in discovery.skipped}
    modalities = list(source.modalities or [])  # a list: the skip reason shows it
    cases = []
    for ref in discovery.series:
        where = str(ref.folder.relative_to(root))
        if modalities and ref.modality not in modalities:
            skipped[f"{where} {ref.label}"] = f"modality {ref.modality} not in {modalities}"
        elif ref.n_frames < source.min_frames:
            skipped[f"{where} {ref.label}"] = (f"{ref.n_frames} frames, fewer than "
                                              f"min_frames {source.min_frames}")
        else:
            series = ref.series_uid or f"{where}#{ref.series_number}"
            name = pseudonymize("/".join((ref.study_uid, series, ref.split)), key)[:12]
            cases.append(CaseSource(f"series-{name}", ref.folder, series=ref))
    if not source.segmentations:
        return SourceListing(cases, skipped)
    return _paired_with_segs(cases, discovery, skipped, root, key)


def _paired_with_segs(cases: list[CaseSource], discovery, skipped: dict[str, str],
                      root: Path, key: bytes) -> SourceListing:
    """Each series with the DICOM SEG that references it (ReferencedSeriesSequence) as
    its mask; the store's segment names are the SEGs' segment labels, which must agree
    where two SEGs use the same segment number. SEGs of no case stay skipped."""
    import pydicom

    from .parsers import ParsedListing

    by_series: dict[str, list[tuple[Path, dict[str, str]]]] = {}
    for file in discovery.skipped:
        if not file.reason.startswith("segmentation (DICOM SEG)"):
            continue
        ds = pydicom.dcmread(file.path, stop_before_pixels=True)
        # A label is a descriptor, kept scrubbed (PS3.15 Clean Descriptors): it becomes
        # a class name of the store.
        identifiers = identifying_values(ds)
        segments = {str(s.SegmentNumber): scrub(str(s.get("SegmentLabel", "") or
                                                    s.get("SegmentDescription", "") or
                                                    f"segment {s.SegmentNumber}"),
                                                identifiers, key)
                    for s in ds.get("SegmentSequence", [])}
        for item in ds.get("ReferencedSeriesSequence", []):
            by_series.setdefault(str(item.SeriesInstanceUID), []).append((file.path, segments))
    classes, named, paired, incomplete = {"0": "background"}, {}, [], {}
    incomplete_cases: dict[str, str] = {}
    for case in cases:
        segs = by_series.get(case.series.series_uid, []) if not case.series.split else []
        if not segs:
            paired.append(case)
            where = f"{case.series.folder.relative_to(root)} {case.series.label}"
            incomplete[where] = "built without a mask: no DICOM SEG of the tree references it"
            incomplete_cases[where] = case.case_id
            continue
        path, segments = sorted(segs)[0]
        for number, label in segments.items():
            if classes.setdefault(number, label) != label:
                raise RecipeError(path, f"segment {number} is {label!r} here but "
                                  f"{classes[number]!r} in {named[number]}",
                                  hint="SEGs of one store must number their segments alike")
            named.setdefault(number, path)
        skipped.pop(str(path.relative_to(root)), None)
        for other, _ in sorted(segs)[1:]:
            skipped[str(other.relative_to(root))] = "another DICOM SEG of a paired series"
        paired.append(dataclasses.replace(case, mask_path=path))
    unpaired = [key_ for key_, reason in skipped.items()
                if reason.startswith("segmentation (DICOM SEG)")]
    if unpaired and all(case.mask_path is None for case in paired):
        raise RecipeError(root, f"none of its {len(unpaired)} DICOM SEG file(s) "
                          f"({shown_items(unpaired, 3)}) references a series of the tree",
                          hint="a SEG pairs with the series its ReferencedSeriesSequence "
                          "names: add those series to the source folder")
    for key_ in unpaired:
        skipped[key_] = "DICOM SEG of no series of the tree"
    return ParsedListing(paired, skipped, incomplete, incomplete_cases=incomplete_cases,
                         labels={"segmentation": {"classes": classes}})


def private_case_id(case_id: str, path: Path, key: bytes) -> str:
    """``case_id``, or a pseudonym when it contains an identifying value, in any
    spelling, of the DICOM headers it names (the headers of one file: patient and study
    are the same in all) -- or when it names a folder of DICOM files none of whose first
    20 has a readable header, since nothing can tell (corrupt files in a folder named
    after their patient). A single unreadable file keeps its name, as a NIfTI file or a
    folder of them does: nothing tells either from a file named after its patient."""
    if path.is_dir():
        files = list(itertools.islice((p for p in sorted(path.rglob("*"))
                                       if p.is_file() and _dicom_named(p)), 20))
    else:
        files = [path] if _dicom_named(path) else []
    if not files:
        return case_id
    identifiers = readable_identity(files)
    if identifiers is None:
        keep = not path.is_dir()
    else:
        keep = scrub(case_id, identifiers, key) == case_id
    return case_id if keep else f"case-{pseudonymize(case_id, key)[:12]}"


def _dicom_named(path: Path) -> bool:
    """Whether ``path`` is read as DICOM: a DICOM suffix, or a file of no known suffix
    with the DICOM preamble (a PNG or NIfTI is not opened to tell)."""
    try:
        return path.is_file() and reader_for(path) is read_dicom
    except ImageReadError:
        return False


def case_id_problem(case_id: str) -> str | None:
    """Why ``case_id`` cannot name a case, or None. A case id is a store path component
    and a file name: no separators, no '..', no leading dot, not too long, and not a
    name the store itself uses (a file ``zarr.json.nii.gz`` would overwrite the
    metadata of the store's case group)."""
    if len(case_id) > MAX_CASE_ID_CHARS:
        return (f"case id {case_id[:40]!r}... is {len(case_id)} characters long, over "
                f"{MAX_CASE_ID_CHARS}: give the file a shorter name")
    if not _SAFE_ID.match(case_id) or ".." in case_id:
        return f"case id {case_id!r} is not a safe name ({SAFE_HINT}): rename the file"
    if case_id.lower() in STORE_NAMES or _STORE_NAME_PATTERN.fullmatch(case_id):
        return (f"case id {case_id!r} is a name the store itself uses (like zarr.json, "
                "labels, scale0, manifest, *.partial): rename the file")
    return None


def is_safe_id(case_id: str) -> bool:
    return case_id_problem(case_id) is None


def safe_id(case_id: str, where: Path) -> str:
    problem = case_id_problem(case_id)
    if problem is not None:
        raise RecipeError(where, problem.rsplit(": ", 1)[0], hint=SAFE_HINT)
    return case_id


def _missing_image_reason(name: str) -> str:
    """Why a table row names no image: images are found by file name under the source,
    so a path that is absolute or climbs out is never followed -- and is said to be so."""
    if (problem := outside_problem(name)) is not None:
        return f"image {name!r} {problem}, not read"
    return "row without an image file"


def _check_unique(cases: list[CaseSource], root: Path) -> None:
    seen: dict[str, CaseSource] = {}
    for case in cases:
        if case.case_id in seen:
            raise RecipeError(case.image_path, f"case id {case.case_id!r} is used twice "
                              f"(also by {seen[case.case_id].image_path})",
                              hint="case ids must be unique within a source")
        seen[case.case_id] = case
