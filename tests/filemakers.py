"""Build small real files of each supported format, for tests (no extra packages needed)."""
from __future__ import annotations

import zipfile
from pathlib import Path


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _write_pdf(path: Path, streams: list[bytes]) -> Path:
    """A valid PDF with one page per content stream, Helvetica as font F1."""
    objects: list[bytes] = []
    kids = []
    font_id = 3 + 2 * len(streams)
    for i, stream in enumerate(streams):
        page_id, content_id = 3 + 2 * i, 4 + 2 * i
        kids.append(f"{page_id} 0 R")
        objects.append(
            f"{page_id} 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> /Contents {content_id} 0 R >> endobj\n".encode())
        objects.append(f"{content_id} 0 obj << /Length {len(stream)} >> stream\n".encode() + stream + b"\nendstream endobj\n")
    header = [
        b"1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n",
        f"2 0 obj << /Type /Pages /Kids [{' '.join(kids)}] /Count {len(streams)} >> endobj\n".encode(),
    ]
    font = f"{font_id} 0 obj << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> endobj\n".encode()
    body = header + objects + [font]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for obj in body:
        offsets.append(len(out))
        out += obj
    xref = len(out)
    out += f"xref\n0 {len(body) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer << /Size {len(body) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    return path


def make_pdf(path: Path, pages: list[str | None]) -> Path:
    """A valid PDF with one page per entry; None makes a page with no text layer."""
    return _write_pdf(path, [b"0 0 1 rg 10 10 100 100 re f" if text is None
                             else f"BT /F1 12 Tf 72 720 Td ({_escaped(text)}) Tj ET".encode("latin-1")
                             for text in pages])


def make_docx(path: Path, paragraphs: list[str]) -> Path:
    ns = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    body = "".join(f"<w:p><w:r><w:t>{p}</w:t></w:r></w:p>" for p in paragraphs)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("[Content_Types].xml",
                   '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                   '<Default Extension="xml" ContentType="application/xml"/>'
                   '<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>')
        z.writestr("word/document.xml", f'<?xml version="1.0"?><w:document {ns}><w:body>{body}</w:body></w:document>')
    return path


def make_text_pdf(path: Path, pages: list[list[str]], size: int = 12, leading: float | None = None) -> Path:
    """A PDF with a real text layer: each page's lines in Helvetica, one under the other from the top
    (`leading` points apart, default 1.5 times the size)."""
    return _write_pdf(path, [f"BT /F1 {size} Tf {leading or size * 1.5:g} TL 72 720 Td "
                             f"{' '.join('(' + _escaped(line) + ') Tj T*' for line in lines)} ET".encode("latin-1")
                             for lines in pages])


SCAN_TOP, SCAN_STEP, SCAN_HEIGHT = 150, 48, 1754  # pixels of a scanned A4 page at 150 dpi


def make_scanned_pdf(path: Path, pages: list[list[str]]) -> Path:
    """An image-only PDF, as a scanner makes it: each page a 150 dpi bilevel picture of its lines (an
    empty list: a blank scanned page), no text layer. Pillow's own font, so no system font is needed."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=28)
    images = []
    for lines in pages:
        image = Image.new("L", (1240, SCAN_HEIGHT), 255)
        draw = ImageDraw.Draw(image)
        for k, line in enumerate(lines):
            draw.text((120, SCAN_TOP + SCAN_STEP * k), line, fill=0, font=font)
        images.append(image.convert("1"))
    images[0].save(path, save_all=True, append_images=images[1:], resolution=150)
    return path
