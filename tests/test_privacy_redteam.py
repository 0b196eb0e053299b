"""Red team of issue 14, "No identifier, no key": a patient whose identifiers are
spelled as people outside the English-speaking world spell them -- accents dropped or
transliterated (``Müller`` as ``MULLER``, ``Mueller``), decomposed as macOS writes file
names, letters NFKD keeps (``Søren``, ``Łukasz``), an ID without its leading zeros, a
name only a vendor's private attribute holds -- in folder and file names and series
descriptions; each store is read back whole (``test_scrub_variants.every_text_of``) with
its exports, catalog and QC report, and searched for every spelling."""

from __future__ import annotations

import re
import unicodedata
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from test_scrub_variants import HARMONIZE, KEY, _cli, every_text_of, write_series

from medimg_build import open_store
from medimg_build.privacy import (DEFAULT_KEY, KEY_ENV, DefaultKeyWarning, identifying_values,
                                  pseudonymize, scrub)
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

NAME, PATIENT_ID = "Müller^José^Luis Maria", "00012345-AB"
SEQUENCE_NAME, PRIVATE_NAME = "Weiß^Søren", "Łukasz^Dvořák"
SPELLINGS = ["MUELLER_JOSE", "Jose.Muller", "Mu\u0308ller Jose\u0301", "MÜLLER_JOSÉ",
             "mueller-jose", "Luis-Maria Muller", "12345_AB", "12345-ab", "Weiss Soren",
             "soren.weiss", "Lukasz Dvorak", "DVORAK_LUKASZ"]

# -- what must not be found, searched for independently of privacy.scrub ---------------
_ASCII = str.maketrans({"ø": "o", "ł": "l", "ß": "ss"})
_SQUEEZED = ("mullerjose", "josemuller", "muellerjose", "josemueller", "12345ab",
             "weisssoren", "sorenweiss", "lukaszdvorak", "dvoraklukasz")
_WORDS = ("muller", "mueller", "jose", "soren", "lukasz", "dvorak")


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold()).translate(_ASCII)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def leaks(text: str) -> list[str]:
    """The spellings of the patient's name, ID, a sequence's or a private name in
    ``text``, whatever its accents, case and separators."""
    low = _ascii(text)
    squeezed = re.sub(r"[\W_]+", "", low)
    return [s for s in _SQUEEZED if s in squeezed] + \
        [w for w in _WORDS if w in re.findall(r"[^\W\d_]+", low)]


def test_leaks_finds_every_spelling():
    for spelling in SPELLINGS:
        assert leaks(f"x/{spelling}/y"), spelling
    assert not leaks("Josefine muell 12345 Strasse [1f0c] AB")


# -- privacy.scrub ------------------------------------------------------------------------
def _patient_dataset() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PATIENT_ID, "19700101"
    person = Dataset()
    person.PersonName = SEQUENCE_NAME
    ds.ContentCreatorIdentificationCodeSequence = Sequence([person])
    ds.add_new(0x00091010, "LO", "ACME private")
    ds.add_new(0x00091011, "PN", PRIVATE_NAME)  # a vendor's copy of a name
    return ds


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_scrub_replaces_spellings_without_accents_or_zeros(spelling):
    identifiers = identifying_values(_patient_dataset())
    scrubbed = scrub(f"images/{spelling}_CT/1.dcm", identifiers, KEY.encode())
    assert not leaks(scrubbed), scrubbed
    assert scrubbed.startswith("images/[") and scrubbed.endswith("_CT/1.dcm")


def test_scrub_leaves_ordinary_words_and_short_unpadded_numbers():
    """Folding accents and zeros makes no new false positives: partial words stay, and
    an ID's number without its zeros is matched only when it is no short number."""
    identifiers = identifying_values(_patient_dataset()) | {"0012345", "CT-0001"}
    for text in ["Josefine muell", "Strasse", "12345", "case_12345.nii.gz", "AB", "Soerensen",
                 "CT 1.25 mm"]:
        assert scrub(text, identifiers, KEY.encode()) == text


# -- real DICOM, named carelessly ----------------------------------------------------------
def _as_patient(paths: list[Path], description: str) -> None:
    """Make the files of a series the patient's, in UTF-8 (write_series writes ASCII)."""
    patient = _patient_dataset()
    for path in paths:
        ds = pydicom.dcmread(path)
        ds.update(patient)
        ds.SeriesDescription = description
        ds.save_as(path)


@pytest.fixture
def accented_tree(tmp_path) -> Path:
    """One series per spelling, in a folder and files named by it and described by it;
    one more series, missing a slice, fails in a folder named after the patient."""
    source = tmp_path / "source"
    for spelling in SPELLINGS:
        _as_patient(write_series(source / spelling, 3, "", f"{spelling}_{{k}}.dcm"),
                    f"CT {spelling}")
    _as_patient(write_series(source / "MULLER-JOSE_12345", 4, "", "{k}.dcm", gap_at=1),
                "T1 Jose Muller")
    return source


def test_dicom_tree_store_and_its_exports_hold_no_accentless_spelling(accented_tree,
                                                                      tmp_path):
    recipe = load_recipe("dicom-tree").with_overrides({"harmonize": HARMONIZE})
    out = tmp_path / "tree.zarr"
    report = build_store(recipe, accented_tree, out, key=KEY, progress=False)
    assert len(report.built) == len(SPELLINGS) and len(report.failed) == 1, \
        report.summary()
    for args in (["export-table", "tree.zarr", "--out", "table.parquet"],
                 ["catalog", "tree.zarr", "--out", "catalog.parquet"],
                 ["report", "tree.zarr", "--out", "qc"]):
        done = _cli(*args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    texts = every_text_of(out, journal=True)
    for table in ("table.parquet", "catalog.parquet"):
        frame = pd.read_parquet(tmp_path / table)
        texts += [str(cell) for cell in frame.to_numpy().ravel()]
        texts.append((tmp_path / table).read_bytes().decode("utf-8", "replace"))
    texts += [p.relative_to(tmp_path).as_posix() for p in (tmp_path / "qc").rglob("*")]
    texts += [p.read_bytes().decode("utf-8", "replace")
              for p in (tmp_path / "qc").rglob("*") if p.is_file()]
    found = sorted({(leak, text[:120]) for text in texts for leak in leaks(text)})
    assert not found, found[:6]


# -- the built-in key -----------------------------------------------------------------------
def test_default_key_tokens_cannot_be_looked_up(tmp_path, monkeypatch):
    """Under the built-in key, which anyone has, a keyed hash of a date of birth is a
    table of 50,000 dates away from the date: the scrubbed description keeps no hash."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    source = tmp_path / "source"
    write_series(source / "series", 3, "CT JANE DOE 1970-01-01", "{k}.dcm")
    recipe = load_recipe("dicom-tree").with_overrides({"harmonize": HARMONIZE})
    with pytest.warns(DefaultKeyWarning):
        report = build_store(recipe, source, tmp_path / "out.zarr", progress=False)
    assert report.ok, report.failed
    description = open_store(tmp_path / "out.zarr").cases.loc[0, "series_description"]
    assert description.startswith("CT [") and "1970" not in description
    public = DEFAULT_KEY.encode()
    day, table = date(1900, 1, 1), {}
    while day.year < 2030:
        table[f"[{pseudonymize(day.strftime('%Y%m%d'), public)[:8]}]"] = day
        day += timedelta(days=1)
    table.update({f"[{pseudonymize(v, public)[:8]}]": v for v in ("Doe^Jane", "Doe", "Jane")})
    assert not [table[t] for t in re.findall(r"\[[0-9a-f]{8}\]", description)], description


def test_volume_folder_case_ids_errors_and_journal_after_a_kill(tmp_path):
    """Folders named after the patient without accents become pseudonymous case ids; a
    case whose pixels are cut fails, its error naming it by its id; a build killed
    midway leaves a lock and a journal, and its resume a store, holding no spelling."""
    source = tmp_path / "source"
    for name in ("MUELLER_JOSE", "Jose.Muller_12345-AB"):
        _as_patient(write_series(source / "images" / name, 4, "", "{k}.dcm"), f"CT {name}")
    broken = source / "images" / "Muller-Jose-1970-01-01"
    _as_patient(write_series(broken, 4, "", "mueller_{k}.dcm"), "CT Muller")
    for path in broken.glob("*.dcm"):
        dataset = pydicom.dcmread(path)
        dataset.PixelData = dataset.PixelData[:30]
        dataset.save_as(path)
    build = ["build", "volume-folder", "--source", "source", "--key", KEY, "--quiet",
             "--out", "out.zarr", "--set", "harmonize.spacing=[2,2,2]", "--set", "labels=null"]
    killed = _cli(*build, cwd=tmp_path, env={"MEDIMG_TEST_KILL_AFTER": "2"})
    assert killed.returncode != 0
    texts = [p.relative_to(tmp_path).as_posix() + p.read_bytes().decode("utf-8", "replace")
             for p in (tmp_path / "out.zarr").rglob("*") if p.is_file()]
    assert not sorted({(leak, t[:120]) for t in texts for leak in leaks(t)})
    resumed = _cli(*build, "--resume", cwd=tmp_path)
    assert resumed.returncode == 1, resumed.stderr  # the broken case fails
    store = open_store(tmp_path / "out.zarr")
    failed = store.attrs["build_report"]["failed"]
    assert len(failed) == 1 and all(c.startswith("case-") for c in store.cases["case_id"])
    texts = every_text_of(tmp_path / "out.zarr", journal=True)
    found = sorted({(leak, text[:120]) for text in texts for leak in leaks(text)})
    assert not found, found[:6]


def test_image_table_skip_reasons_quoting_a_patient_named_file(tmp_path):
    """A table row skipped for its DICOM image's name (no safe case id) or for its mask
    (outside the source folder): the stored reason quotes the names, scrubbed of the
    identifiers of the image the row names (it is found under the source folder)."""
    source = tmp_path / "source"
    files = write_series(source / "images", 3, "CR", "x{k}.dcm")
    names = ["ok.dcm", "Müller^José 1970.dcm", "MUELLER_JOSE.dcm"]
    for path, name in zip(files, names):
        _as_patient([path], "CR")
        path.rename(source / "images" / name)
    masks = ["", "", "../outside/Jose_Muller_mask.png"]
    (source / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Patient ID,Mask\n"
        + "".join(f"{n},No Finding,1,{m}\n" for n, m in zip(names, masks)), encoding="utf-8")
    recipe = load_recipe("nih-chestxray14").with_overrides(
        {"source": {"images": "**/*.dcm", "columns": None, "mask_column": "Mask"},
         "split": {"lists": None}, "labels": {"boxes": None},
         "harmonize": {"shape": [16, 16]}})
    out = tmp_path / "table.zarr"
    report = build_store(recipe, source, out, key=KEY, progress=False)
    assert len(report.built) == 1 and len(report.skipped) == 2, report.summary()
    reasons = open_store(out).attrs["build_report"]["skipped"]
    assert len(reasons) == 2 and any("outside" in r for r in reasons), reasons
    found = sorted({(leak, r) for r in reasons for leak in leaks(r)})
    assert not found, found


def test_a_stray_accent_does_not_split_a_name():
    """A combining accent with no letter before it separates, as a space does: after a
    digit it was a chunk of its own that folded to nothing and broke the ID in two."""
    identifiers = identifying_values(_patient_dataset())
    for text in ["MULLER \u0301JOSE", "Muller_\u0308Jose", "12345\u0301-AB"]:
        assert not leaks(scrub(text, identifiers, KEY.encode())), text


def test_words_of_a_name_component_with_spaces():
    """A family or given name of several words ("van der Berg", "Anna Maria"): each word
    is a name alone ("Berg Anna" named her whole), particles (van, der) are not."""
    ds = Dataset()
    ds.PatientName = "van der Berg^Anna Maria^^Dr^PhD"
    identifiers = identifying_values(ds)
    for text in ["Berg Anna", "VANDERBERG_ANNA", "Dr Anna van der Berg PhD", "maria.berg"]:
        scrubbed = scrub(text, identifiers, KEY.encode()).casefold()
        assert not {"anna", "maria", "berg", "vanderberg"} & set(re.findall(r"\w+", scrubbed)), \
            (text, scrubbed)
    assert scrub("Kopf der Patientin, van", identifiers, KEY.encode()) == \
        "Kopf der Patientin, van"


def test_ideographic_and_phonetic_groups_of_a_name():
    """A Japanese name's three groups (alphabetic=ideographic=phonetic): each group is a
    whole name of its own, so the ideographic "山田太郎" goes as "TAROU_YAMADA" does."""
    ds = Dataset()
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    identifiers = identifying_values(ds)
    for text in ["山田太郎", "山田_太郎", "太郎 山田", "やまだたろう", "TAROU_YAMADA"]:
        scrubbed = scrub(text, identifiers, KEY.encode())
        assert re.fullmatch(r"\[[0-9a-f]{8}\]", scrubbed), (text, scrubbed)


def test_the_build_context_never_shows_the_key():
    """The context is pickled to every worker; printed in a log or a Dask error, it
    must not show the key."""
    from medimg_build.recipe.model import load_recipe
    from medimg_build.recipe.pipeline import BuildContext

    context = BuildContext(load_recipe("volume-folder"), Path("/data"), b"s3cret-key")
    assert "s3cret-key" not in repr(context) and "s3cret-key" not in str(context)
