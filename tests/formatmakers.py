"""Build small real files of the formats in rag/ingest/formats/ (python-pptx and openpyxl write the
Office ones; the others are written by hand), and the mixed-format corpus of the evaluation."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path


def make_pptx(path: Path, slides: list[tuple[str, str]], notes: dict[int, str] | None = None) -> Path:
    """One slide per (title, body); notes maps a 1-based slide number to its speaker notes."""
    from pptx import Presentation

    deck = Presentation()
    for number, (title, body) in enumerate(slides, start=1):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        if notes and number in notes:
            slide.notes_slide.notes_text_frame.text = notes[number]
    deck.save(str(path))
    return path


def make_xlsx(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def make_csv(path: Path, rows: list[list[object]]) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    return path


def make_epub(path: Path, chapters: list[tuple[str | None, str]], cover: bool = True) -> Path:
    """An EPUB 3 whose spine is an image-only cover page (no text) and then one XHTML document per
    (title, paragraphs separated by blank lines) chapter; a None title gives a chapter with no heading."""
    items, refs = [], []
    files: dict[str, str] = {}
    cover_page = ('<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Cover</title></head>'
                  '<body><img src="cover.png" alt=""/></body></html>')
    pages = [("cover", cover_page)] if cover else []
    for i, (title, body) in enumerate(chapters, start=1):
        heading = f"<h1>{title}</h1>" if title else ""
        paragraphs = "".join(f"<p>{p}</p>" for p in body.split("\n\n"))
        markup = (f'<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
                  f"<head><title>Book part {i}</title><style>p {{margin: 0}}</style></head>"
                  f"<body>{heading}{paragraphs}</body></html>")
        pages.append((f"ch{i}", markup))
    for ident, markup in pages:
        files[f"OEBPS/text/{ident}.xhtml"] = markup
        items.append(f'<item id="{ident}" href="text/{ident}.xhtml" media-type="application/xhtml+xml"/>')
        refs.append(f'<itemref idref="{ident}"/>')
    opf = ('<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
           f'<metadata/><manifest>{"".join(items)}</manifest><spine>{"".join(refs)}</spine></package>')
    container = ('<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
                 '<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
                 '</rootfiles></container>')
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip")
        z.writestr("META-INF/container.xml", container)
        z.writestr("OEBPS/content.opf", opf)
        for name, markup in files.items():
            z.writestr(name, markup)
    return path


def make_eml(path: Path, subject: str, sender: str, date: str, body: str, html: str | None = None,
             attachment: tuple[str, str] | None = None) -> Path:
    """A message with a plain body (or only an HTML one when body is empty and html given) and,
    optionally, a text attachment (name, contents)."""
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["Subject"], msg["From"], msg["To"], msg["Date"] = subject, sender, "team@example.com", date
    if body:
        msg.set_content(body)
        if html:
            msg.add_alternative(html, subtype="html")
    elif html:
        msg.set_content(html, subtype="html")
    if attachment:
        msg.add_attachment(attachment[1].encode(), maintype="text", subtype="plain", filename=attachment[0])
    path.write_bytes(bytes(msg))
    return path


def make_ipynb(path: Path, cells: list[tuple[str, str] | tuple[str, str, list[dict]]]) -> Path:
    """cells: (kind, source) or ("code", source, outputs) with nbformat 4 output dicts."""
    out = []
    for cell in cells:
        kind, source = cell[0], cell[1]
        entry = {"cell_type": kind, "metadata": {}, "source": source.splitlines(keepends=True)}
        if kind == "code":
            entry.update(execution_count=None, outputs=list(cell[2]) if len(cell) > 2 else [])
        out.append(entry)
    path.write_text(json.dumps({"cells": out, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}), encoding="utf-8")
    return path


def stream(text: str) -> dict:
    return {"output_type": "stream", "name": "stdout", "text": [text]}


def result(text: str) -> dict:
    return {"output_type": "execute_result", "execution_count": 1, "metadata": {},
            "data": {"text/plain": [text], "image/png": "iVBORw0KGgo="}}


def build_mixed_corpus(folder: str | Path, scanned: bool = True) -> dict[str, Path]:
    """One file per new format, and a PDF with a text layer and a scanned one (OCR), each with a few
    distinctive facts that tests/data/mixed_testset.jsonl asks about (where each answer is:
    MIXED_LOCATIONS). Returns the files by extension (".scan.pdf" for the scan). `scanned=False` leaves
    the scan out (fast unit tests: OCR is a real model)."""
    from tests.filemakers import make_scanned_pdf, make_text_pdf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pdfs = {".pdf": make_text_pdf(folder / "tide-tables.pdf", [
        ["Tide tables of the Solent, spring edition."],
        ["High water at Cowes on 3 June is at 06:42.", "Low water follows at 12:58."]])}
    if scanned:
        pdfs[".scan.pdf"] = make_scanned_pdf(folder / "harbour-log.pdf", [
            ["Harbour master's log of Quillon Bay, autumn season."],
            ["The dredger Albatross cleared the north channel.", "The work took eleven days."]])
    return pdfs | {
        ".pptx": make_pptx(folder / "heron-roadmap.pptx", [
            ("Project Heron", "Quarterly roadmap review for the steering group"),
            ("Pilot launch", "The Heron prototype ships to pilot customers in Lisbon in September."),
            ("Budget", "The approved budget for Project Heron is 4.2 million euros."),
        ], notes={3: "The budget was approved by the board in January."}),
        ".xlsx": make_xlsx(folder / "regional-sales.xlsx", {
            "Regions": [["Region", "Manager", "Revenue (EUR)"], ["North", "Ingrid Solberg", 310000],
                        ["South", "Marco Ferri", 275000], ["East", "Yuki Tanabe", 198000]],
        }),
        ".csv": make_csv(folder / "warehouse-stock.csv", [
            ["Item", "Warehouse", "Quantity"], ["copper valves", "Tromsø", 1240], ["brass fittings", "Narvik", 860],
            ["steel flanges", "Bodø", 415]]),
        ".epub": make_epub(folder / "marigold.epub", [
            ("The Harbour", "Captain Elsa Varga sailed the schooner Marigold out of Port Azure at dawn."),
            ("The Storm", "During the storm the Marigold lost its mainmast near Kestrel Reef."),
            ("The Rescue", "A fishing boat called the Osprey towed the Marigold back to the harbour."),
        ]),
        ".eml": make_eml(folder / "offsite.eml", "Spring offsite moved", "Dana Whitfield <dana@example.com>",
                         "Tue, 05 Mar 2024 09:30:00 +0000",
                         "Hi all,\n\nThe spring offsite moves to the Alder Lodge in Bergen. It takes place on 14 May.\n"
                         "Please book your trains by Friday.\n\nDana\n",
                         attachment=("agenda.txt", "The attachment says the offsite is in Reykjavik.")),
        ".ipynb": make_ipynb(folder / "churn-analysis.ipynb", [
            ("markdown", "# Churn analysis\n\nThe churn model is a gradient boosting classifier with 300 trees."),
            ("code", "model.fit(X_train, y_train)\nprint(f'validation accuracy: {accuracy:.3f}')",
             [stream("validation accuracy: 0.873\n")]),
        ]),
    }


# Where each answerable item of tests/data/mixed_testset.jsonl is answered: (file, location).
MIXED_LOCATIONS = {
    "m01": ("heron-roadmap.pptx", "slide 2"),
    "m02": ("heron-roadmap.pptx", "slide 3"),
    "m03": ("regional-sales.xlsx", "sheet Regions, rows 2-4"),
    "m04": ("warehouse-stock.csv", "rows 2-4"),
    "m05": ("marigold.epub", "chapter 2: The Storm"),
    "m06": ("marigold.epub", "chapter 3: The Rescue"),
    "m07": ("offsite.eml", 'e-mail "Spring offsite moved" from Dana Whitfield <dana@example.com>, 2024-03-05'),
    "m08": ("offsite.eml", 'e-mail "Spring offsite moved" from Dana Whitfield <dana@example.com>, 2024-03-05'),
    "m09": ("churn-analysis.ipynb", "cell 1"),
    "m10": ("churn-analysis.ipynb", "cell 2"),
    "m14": ("tide-tables.pdf", "page 2"),  # a PDF's citation has no location but its page
    "m15": ("harbour-log.pdf", "page 2"),  # scanned: text from OCR
}


def cited_at(citation: dict, name: str, location: str) -> bool:
    """Whether a citation (Citation.to_json, or an eval item's) points at `name` and `location`; a PDF's
    location is its page ("page 2")."""
    where = citation.get("location") or (f"page {citation['page']}" if citation.get("page") else None)
    return Path(citation["source"]).name == name and where == location
