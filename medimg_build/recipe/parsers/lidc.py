"""LIDC-IDRI (Armato et al., 2011): thoracic CT series read by up to four radiologists.

The TCIA download (NBIA Data Retriever: ``manifest-<id>/`` holding ``metadata.csv`` and
the collection folder ``LIDC-IDRI/``; SOURCE may be any folder above the patients)::

    SOURCE/manifest-<id>/LIDC-IDRI/LIDC-IDRI-0001/<study>/<series>/*.dcm    one CT series
    SOURCE/manifest-<id>/LIDC-IDRI/LIDC-IDRI-0001/<study>/<series>/069.xml  its reads

The patient is the path's ``LIDC-IDRI-NNNN`` folder, wherever it lies below SOURCE.

Each XML (namespace ``http://www.nih.gov``) holds one ``readingSession`` per reader;
each ``unblindedReadNodule`` a reader marked has ``characteristics`` (``malignancy``
1-5, ...) and one ``roi`` per slice: ``imageZposition``, ``imageSOP_UID``,
``inclusion`` and the outline as ``edgeMap`` points (``xCoord`` = column, ``yCoord`` =
row, 0-based pixels). Nodules < 3 mm are a single point without characteristics;
``nonNodule`` marks are points too.

What the parser ``lidc`` makes: **one case per CT series that has an XML**, and one 3D
box per **consensus nodule**:

1. every nodule >= 3 mm of every reader becomes a voxel box: the columns and rows its
   inclusion outlines span, on the slices its ROIs lie on (matched by ``imageSOP_UID``,
   else by ``imageZposition`` to the nearest slice);
2. boxes of different readers that overlap are one nodule (single linkage);
3. a nodule is kept when at least half of the series' readers marked it (LIDC's usual
   50 % agreement level, as pylidc's ``consensus(clevel=0.5)``), and its box is the hull of
   the voxels inside the boxes of at least half of the readers that marked it;
4. its label is the median of those readers' malignancy ratings, rounded half up, by the
   LIDC rating names (1 highly unlikely ... 5 highly suspicious).

Masks (filling the outlines, consensus per voxel) are not made: see the recipe.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from ...errors import RecipeError
from ...privacy import pseudonymize
from ..paths import inside_glob
from ..source_report import system_file
from ..sources import CaseSource, SourceListing
from . import parser

PATIENT_FOLDER = re.compile(r"^LIDC-IDRI-\d{4}$")
MALIGNANCY = ["highly_unlikely", "moderately_unlikely", "indeterminate",
              "moderately_suspicious", "highly_suspicious"]


def _tag(element: ET.Element) -> str:
    return element.tag.rsplit("}", 1)[-1]


def _all(element: ET.Element, name: str) -> list[ET.Element]:
    return [e for e in element if _tag(e) == name]


def _text(element: ET.Element, name: str) -> str | None:
    found = next((e for e in element if _tag(e) == name), None)
    return None if found is None or found.text is None else found.text.strip()


def _slices(folder: Path) -> tuple[dict[str, int], np.ndarray, str]:
    """SOP UID -> k (slices ordered along their normal, as the series is read), the
    slices' positions along the normal, and the series UID."""
    headers = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() == ".xml" or not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # not DICOM: the series reader reports it
            continue
        if getattr(ds, "Modality", None) == "CT" and "ImagePositionPatient" in ds:
            headers.append(ds)
    if not headers:
        return {}, np.zeros(0), ""
    row, column = (np.array(headers[0].ImageOrientationPatient[:3], float),
                   np.array(headers[0].ImageOrientationPatient[3:], float))
    normal = np.cross(row, column)
    position = [float(np.dot(normal, np.array(h.ImagePositionPatient, float)))
                for h in headers]
    order = np.argsort(position, kind="stable")
    by_uid = {str(headers[n].SOPInstanceUID): k for k, n in enumerate(order)
              if "SOPInstanceUID" in headers[n]}
    return by_uid, np.array(position)[order], str(headers[0].get("SeriesInstanceUID", ""))


def reader_nodules(xml: Path, by_uid: dict[str, int], positions: np.ndarray
                   ) -> tuple[int, list[dict[str, Any]]]:
    """(number of readers, every >= 3 mm nodule of every reader as a voxel box)."""
    try:
        root = ET.parse(xml).getroot()
    except ET.ParseError as error:
        raise RecipeError(xml, f"is not well-formed XML ({error})") from error
    if _tag(root) != "LidcReadMessage":
        raise RecipeError(xml, f"root element is {_tag(root)!r}, not LidcReadMessage",
                          hint="LIDC CT reads are LidcReadMessage XML files")
    sessions = _all(root, "readingSession")
    found = []
    for reader, session in enumerate(sessions):
        for nodule in _all(session, "unblindedReadNodule"):
            characteristics = next((e for e in nodule if _tag(e) == "characteristics"), None)
            rois = [r for r in _all(nodule, "roi")
                    if (_text(r, "inclusion") or "TRUE").upper() == "TRUE"]
            points = [(int(float(_text(m, "xCoord"))), int(float(_text(m, "yCoord"))))
                      for r in rois for m in _all(r, "edgeMap")]
            if characteristics is None or len(points) < 2:
                continue  # a < 3 mm nodule: one point, no outline, no ratings
            ks = [_slice_of(r, by_uid, positions, xml) for r in rois]
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            malignancy = _text(characteristics, "malignancy")
            found.append({"reader": reader, "nodule_id": _text(nodule, "noduleID"),
                          "first": (min(xs), min(ys), min(ks)),
                          "last": (max(xs), max(ys), max(ks)),
                          "malignancy": int(malignancy) if malignancy else None})
    return len(sessions), found


def _slice_of(roi: ET.Element, by_uid: dict[str, int], positions: np.ndarray,
              xml: Path) -> int:
    uid = _text(roi, "imageSOP_UID")
    if uid in by_uid:
        return by_uid[uid]
    z = _text(roi, "imageZposition")
    if z is None or not len(positions):
        raise RecipeError(xml, f"ROI on slice {uid} not found in the series",
                          hint="the XML must sit beside the DICOM series it reads")
    nearest = int(np.argmin(np.abs(positions - float(z))))
    if abs(positions[nearest] - float(z)) > 0.5 * max(np.diff(positions).min(initial=1), 0.1):
        raise RecipeError(xml, f"ROI at z = {z} mm matches no slice of the series")
    return nearest


def consensus(n_readers: int, nodules: list[dict[str, Any]], level: float = 0.5
              ) -> list[dict[str, Any]]:
    """Overlapping reader boxes grouped into nodules; those marked by at least
    ``level`` of the readers, with the hull of the voxels inside at least ``level`` of
    their readers' boxes and the median malignancy."""
    groups = list(range(len(nodules)))

    def find(n: int) -> int:
        while groups[n] != n:
            n = groups[n]
        return n

    for a in range(len(nodules)):
        for b in range(a + 1, len(nodules)):
            if _overlap(nodules[a], nodules[b]):
                groups[find(b)] = find(a)
    clusters: dict[int, list[dict]] = {}
    for n, nodule in enumerate(nodules):
        clusters.setdefault(find(n), []).append(nodule)
    needed = math.ceil(level * n_readers)
    result = []
    for members in clusters.values():
        readers = {m["reader"] for m in members}
        if len(readers) < max(needed, 1):
            continue
        first = np.min([m["first"] for m in members], axis=0)
        last = np.max([m["last"] for m in members], axis=0)
        counts = np.zeros(last - first + 1, np.int16)
        for reader in readers:  # a reader's boxes of one nodule count once per voxel
            marked = np.zeros(counts.shape, bool)
            for m in (m for m in members if m["reader"] == reader):
                lo, hi = np.array(m["first"]) - first, np.array(m["last"]) - first + 1
                marked[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
            counts += marked
        inside = np.argwhere(counts >= math.ceil(level * len(readers)))
        ratings = sorted(m["malignancy"] for m in members if m["malignancy"] is not None)
        median = float(np.median(ratings)) if ratings else None
        result.append({
            "first": tuple(int(v) for v in inside.min(axis=0) + first),
            "last": tuple(int(v) for v in inside.max(axis=0) + first),
            "n_readers": len(readers),
            "malignancy_median": median,
            "label": MALIGNANCY[int(math.floor(median + 0.5)) - 1] if median else "unrated",
        })
    return sorted(result, key=lambda r: (r["first"][2], r["first"][1], r["first"][0]))


def _patient_of(relative: Path) -> str:
    """The ``LIDC-IDRI-NNNN`` folder of a path below the source (the NBIA download puts
    a ``LIDC-IDRI/`` collection folder above the patients); else its first folder."""
    return next((part for part in relative.parts[:-1] if PATIENT_FOLDER.match(part)),
                relative.parts[0])


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a["first"][d] <= b["last"][d] and b["first"][d] <= a["last"][d]
               for d in range(3))


@parser("lidc", options={"xml", "consensus_level"})
def lidc(options: dict[str, Any], root: Path, key: bytes) -> SourceListing:
    level = float(options.get("consensus_level", 0.5))
    cases, skipped = [], {}
    for xml in inside_glob(root, options.get("xml", "**/LIDC-IDRI-*/**/*.xml"),
                           "source.options.xml"):
        where = str(xml.relative_to(root))
        if (problem := system_file(xml)) is not None:
            skipped[where] = problem  # a macOS ._069.xml fork: no read, no broken XML
            continue
        try:
            head = ET.parse(xml).getroot()
        except ET.ParseError:
            skipped[where] = "not well-formed XML"
            continue
        if _tag(head) != "LidcReadMessage":  # the CR/DX reads (IdriReadMessage)
            skipped[where] = f"{_tag(head)} XML, not a CT read"
            continue
        by_uid, positions, series_uid = _slices(xml.parent)
        if not len(positions):
            skipped[where] = "reads without a CT series beside them"
            continue
        n_readers, marked = reader_nodules(xml, by_uid, positions)
        nodules = consensus(n_readers, marked, level)
        rows = [{"nodule": f"{n + 1}", "label": nodule["label"],
                 "i0": nodule["first"][0], "j0": nodule["first"][1], "k0": nodule["first"][2],
                 "i1": nodule["last"][0], "j1": nodule["last"][1], "k1": nodule["last"][2]}
                for n, nodule in enumerate(nodules)]
        patient = _patient_of(xml.relative_to(root))
        name = pseudonymize(series_uid or where, key)[:12]
        fields = {"n_readers": n_readers, "n_reader_nodules": len(marked),
                  "n_nodules": len(nodules),
                  "malignancy_median": "|".join(f"{n['malignancy_median']:g}"
                                                for n in nodules if n["malignancy_median"])}
        cases.append(CaseSource(f"series-{name}", xml.parent, patient_id=patient,
                                fields=fields, annotations={"boxes": rows}))
    return SourceListing(cases, skipped)
