"""The visual QC report of a store (``medimg-build report``): a dataset card, montages of
sampled cases with their labels overlaid and anatomical directions marked, intensity
histograms and geometry distributions, in one static HTML page with its images.

    sampling.py    which cases: a fixed, seeded number per split and per class
    views.py       how a voxel grid is laid out on screen (radiological convention)
    reading.py     the pixels and annotations of one sampled case, and its planes
    thumbnails.py  one PNG per plane, with mask, boxes, landmarks and edge labels
    figures.py     intensity histograms; spacing and shape distributions
    card.py        the dataset card and count tables
    html.py        index.html from templates/report.html
    write.py       write_report: all of the above
"""

from .write import write_report, write_store_report

__all__ = ["write_report", "write_store_report"]
