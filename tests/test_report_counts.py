"""The QC report's counts (issue 19): unknown labels are counted as unknown, not as
negatives, beside the recipe's "No Finding"; skipped files are listed by reason with
their number, and total what the build's summary says."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_build import _chest_source

from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.report import write_report

ROWS = [("00000001_000.png", "Cardiomegaly", "1"),
        ("00000001_001.png", "Cardiomegaly|Effusion", "1"),
        ("00000002_000.png", "No Finding", "2"),
        ("00000003_000.png", "", "3"),  # unknown: the table gives no finding
        ("00000004_000.png", "", "4"),
        ("00000005_000.png", "", "5")]
# What a download holds beside its images: skipped, each file counted (source_report.py).
LEFT_BESIDE = [".DS_Store", "Thumbs.db", "._00000001_000.png", "._00000002_000.png"]


class Tables(HTMLParser):
    """Each <table> of a page: caption -> {"head": [...], "rows": [[...]], "foot": [...]}."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, list]] = {}
        self._table: dict[str, list] | None = None
        self._part, self._row, self._text = "rows", None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = {"caption": [], "head": [], "rows": [], "foot": []}
        elif tag in ("thead", "tbody", "tfoot"):
            self._part = {"thead": "head", "tbody": "rows", "tfoot": "foot"}[tag]
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th", "caption"):
            self._text = []

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._row is not None:
            self._row.append(" ".join("".join(self._text).split()))
            self._text = None
        elif tag == "caption":
            self._table["caption"] = " ".join("".join(self._text).split())
            self._text = None
        elif tag == "tr":
            self._table[self._part].append(self._row)
            self._row = None
        elif tag == "table":
            self.tables[self._table.pop("caption")] = self._table
            self._table = None


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("counts")
    source = _chest_source(root / "nih", ROWS)
    for name in LEFT_BESIDE:
        (source / "images_001" / "images" / name).write_bytes(b"\0\0\0\0")
    recipe = load_recipe("nih-chestxray14").with_overrides({"harmonize": {"shape": [32, 32]}})
    report = build_store(recipe, source, root / "chest.zarr", progress=False)
    assert report.ok and len(report.skipped) == len(LEFT_BESIDE)
    index = write_report(root / "chest.zarr", root / "report")
    parser = Tables()
    html = index.read_text()
    parser.feed(html)
    return report, parser.tables, html


def test_unknown_labels_are_counted_as_unknown(built):
    _, tables, _ = built
    table = tables["finding: cases of each class, per split"]
    totals = {row[0]: int(row[-1]) for row in table["rows"]}
    assert totals["Cardiomegaly"] == 2 and totals["Effusion"] == 1
    assert totals["No Finding"] == 1  # the recipe's name for "known, none positive"
    assert totals["unknown"] == 3  # an empty cell: not a negative of every finding
    assert totals["Mass"] == 0


def test_skipped_files_are_counted_as_the_build_counts_them(built):
    report, tables, html = built
    skipped = tables["Skipped files"]
    assert skipped["head"] == [["reason", "files"]]
    assert sum(int(row[1]) for row in skipped["rows"]) == len(report.skipped)
    assert skipped["foot"] == [["total", str(len(report.skipped))]]
    reasons = {row[0] for row in skipped["rows"]}
    assert reasons == set(report.skipped.values())
    # The same number as the summary the command line prints.
    assert f"{len(report.skipped)} source file(s) skipped" in report.summary()
    assert f"{len(report.skipped)} source file(s) skipped" in " ".join(html.split())


def test_the_subtitle_counts_one_case_in_the_singular(tmp_path):
    source = _chest_source(tmp_path / "nih", ROWS[:1])
    recipe = load_recipe("nih-chestxray14").with_overrides({"harmonize": {"shape": [32, 32]}})
    assert build_store(recipe, source, tmp_path / "one.zarr", progress=False).ok
    html = Path(write_report(tmp_path / "one.zarr", tmp_path / "report")).read_text()
    assert "· 1 case<" in html and "1 cases" not in html


def test_a_store_whose_every_case_failed_has_a_report_and_an_empty_dataset(tmp_path):
    """The report is where a user looks to see why every case failed: it was refused
    with "no label 'class' in the store" (the vocabulary's label, which no case wrote),
    as CaseDataset was; then the template asked for charts no case could give."""
    from medimg_build.training import CaseDataset

    for folder, text in (("a", "x"), ("b", "y")):
        (tmp_path / "src" / folder).mkdir(parents=True)
        (tmp_path / "src" / folder / "1.png").write_text(text)
    report = build_store(load_recipe("class-folders"), tmp_path / "src",
                         tmp_path / "s.zarr", progress=False)
    assert not report.built and set(report.failed) == {"a_1", "b_1"}
    page = write_report(tmp_path / "s.zarr", tmp_path / "report")
    text = Path(page).read_text()
    assert text.count("not a PNG image") == 2
    dataset = CaseDataset(tmp_path / "s.zarr")
    assert len(dataset) == 0 and dataset.label_names == []
