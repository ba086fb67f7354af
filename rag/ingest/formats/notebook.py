"""Jupyter notebooks (.ipynb, nbformat 4) from their JSON: one section per cell, "cell N".

N counts every cell from 1, as the notebook shows them (an empty cell keeps its number but adds no
text). Markdown and code cells are read; raw cells are not. Of a code cell's outputs only the text
ones are kept, after "Output:": printed streams and the text/plain form of results, since printed
values are often what a question asks about ("accuracy 0.93"); images, HTML and error tracebacks
are left out."""
from __future__ import annotations

import json

from rag.ingest.formats.common import Extracted, Parts, Source


def read_ipynb(source: Source) -> Extracted:
    text = source.decode(source.name, source.data)
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as exc:
        raise source.fail(f"cannot parse notebook: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        found = notebook.get("nbformat") if isinstance(notebook, dict) else None
        raise source.fail(f"cannot parse notebook: no list of cells (nbformat {found!r}; only nbformat 4 is read)")
    parts = Parts(source)
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("markdown", "code"):
            continue
        body = _text(cell.get("source"))
        if cell["cell_type"] == "code":
            outputs = [_output_text(o) for o in cell.get("outputs") or [] if isinstance(o, dict)]
            outputs = [o.strip() for o in outputs if o.strip()]
            if outputs:
                body = body.rstrip() + "\n\nOutput: " + "\n".join(outputs)
        parts.add(f"cell {number}", body)
    return parts.result()


def _text(value: object) -> str:
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def _output_text(output: dict) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        return _text(output.get("text"))
    if kind in ("execute_result", "display_data"):
        data = output.get("data")
        return _text(data.get("text/plain")) if isinstance(data, dict) else ""
    return ""
