import pytest

from rag.errors import InputError, LoadError
from rag.ingest import loading
from tests.filemakers import make_docx, make_pdf


def test_text_and_markdown(tmp_path):
    p = tmp_path / "a.md"
    p.write_text("# Title\n\nSome words here.", encoding="utf-8")
    doc = loading.load(p)
    assert doc.text == "# Title\n\nSome words here."
    assert doc.source == str(p.resolve())
    assert doc.id == loading.load(p).id  # stable


def test_html_is_stripped_of_markup_and_scripts(tmp_path):
    p = tmp_path / "a.html"
    p.write_text("<html><head><title>T</title><style>p{}</style></head><body><h1>Head</h1>"
                 "<p>Body text.<script>alert('x')</script></p><img src=x onerror=alert(1)></body></html>")
    text = loading.load(p).text
    assert "Head" in text and "Body text." in text
    assert "alert" not in text and "<" not in text


def test_pdf_keeps_page_numbers(tmp_path):
    p = make_pdf(tmp_path / "a.pdf", ["First page words.", "Second page words."])
    doc = loading.load(p)
    assert "First page words." in doc.text and "Second page words." in doc.text
    assert doc.page_at(doc.text.index("First")) == 1
    assert doc.page_at(doc.text.index("Second")) == 2


def test_docx(tmp_path):
    p = make_docx(tmp_path / "a.docx", ["Hello from Word.", "Second paragraph."])
    text = loading.load(p).text
    assert "Hello from Word." in text and "Second paragraph." in text


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("empty.txt", b"", "empty"),
        ("blank.md", b"  \n\n ", "empty"),
        ("binary.txt", b"\x00\x01\x02\x03binary", "binary"),
        ("latin1.txt", "caf\xe9 cr\xe8me".encode("latin-1"), "UTF-8"),
        ("corrupt.pdf", b"%PDF-1.4 this is not really a pdf", "cannot parse PDF"),
        ("corrupt.docx", b"PK\x03\x04 not a zip", "cannot parse DOCX"),
        ("image.png", b"\x89PNG\r\n\x1a\n", "unsupported file type"),
    ],
)
def test_bad_files_raise_named_errors(tmp_path, name, content, reason):
    p = tmp_path / name
    p.write_bytes(content)
    with pytest.raises(LoadError) as err:
        loading.load(p)
    assert err.value.path == str(p)
    assert reason in err.value.reason


def test_pdf_without_text_layer(tmp_path):
    p = make_pdf(tmp_path / "scan.pdf", [None, None])
    with pytest.raises(LoadError, match="no text layer"):
        loading.load(p)


def test_discover_recurses_skips_hidden_and_rejects_missing(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("b")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.txt").write_text("c")
    assert [p.name for p in loading.discover([tmp_path])] == ["a.txt", "b.txt"]
    with pytest.raises(InputError, match="does not exist"):
        list(loading.discover([tmp_path / "nope"]))
