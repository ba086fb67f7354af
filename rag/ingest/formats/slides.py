"""Slides (.pptx) through python-pptx: one section per slide, "slide N".

A slide's text is the text of its shapes in their order on the slide (text frames, table cells a row
per line, grouped shapes opened), then its speaker notes after "Notes:". Pictures and charts carry no
text here; a slide without any text is skipped (its number is kept by the others)."""
from __future__ import annotations

import zipfile

from rag.errors import LoadError
from rag.ingest.formats.common import Extracted, Parts, Source, clean

CELL_SEPARATOR = " | "


def read_pptx(source: Source) -> Extracted:
    from pptx import Presentation
    from pptx.exc import PackageNotFoundError

    parts = Parts(source)
    try:
        deck = Presentation(str(source.path))
        for number, slide in enumerate(deck.slides, start=1):
            texts = [t for shape in slide.shapes for t in _shape_texts(shape)]
            if slide.has_notes_slide:
                notes = slide.notes_slide.notes_text_frame
                if notes is not None and notes.text.strip():
                    texts.append("Notes: " + notes.text)
            parts.add(f"slide {number}", clean("\n\n".join(texts)))
    except LoadError:
        raise
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, AttributeError,
            SyntaxError) as exc:  # lxml's XMLSyntaxError is a SyntaxError
        raise source.fail(f"cannot parse PPTX ({type(exc).__name__}: {exc})") from exc
    return parts.result()


def _shape_texts(shape) -> list[str]:
    if getattr(shape, "shape_type", None) is not None and hasattr(shape, "shapes"):  # a group
        return [t for inner in shape.shapes for t in _shape_texts(inner)]
    if getattr(shape, "has_table", False):
        rows = [CELL_SEPARATOR.join(" ".join(c.text.split()) for c in row.cells) for row in shape.table.rows]
        return ["\n".join(r for r in rows if r.strip(" |"))]
    if getattr(shape, "has_text_frame", False) and shape.text_frame.text.strip():
        return [shape.text_frame.text]
    return []
