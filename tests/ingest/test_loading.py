import os
import time
import zipfile
from pathlib import Path

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


# -- bounded and named: hostile inputs (issue 12) ------------------------------------------------------


def _zip_docx(path, member_bytes: int, level: int = 1):
    """A .docx whose word/document.xml inflates to `member_bytes` of spaces: ~4.6 MB for 1 GB at level 1."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("word/document.xml", "w", force_zip64=True) as f:
            block = b" " * 2**20
            for _ in range(member_bytes // 2**20):
                f.write(block)
    return path


def test_a_docx_that_unzips_past_the_limit_is_refused_from_its_directory(tmp_path):
    p = _zip_docx(tmp_path / "bomb.docx", 300 * 2**20)
    with pytest.raises(LoadError, match=r"expands to 300 MB when unzipped, more than the 100 MB limit"):
        loading.load(p)


def test_a_docx_part_that_expands_too_much_is_refused(tmp_path):
    p = _zip_docx(tmp_path / "dense.docx", 8 * 2**20, level=9)  # ~8 KB -> 8 MB: ~1000x
    with pytest.raises(LoadError, match=r"part 'word/document.xml' expands [\d,]+x .* more than the 100x limit"):
        loading.load(p)
    limits = loading.Limits(max_chars=10**6, max_unzipped_bytes=2**30, max_zip_ratio=10**5)
    with pytest.raises(LoadError, match="cannot parse DOCX"):  # past the limits, the XML (only spaces) is bad
        loading.load(p, limits)


def test_xxe_and_entity_bombs_in_a_docx_are_not_expanded(tmp_path):
    ns = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    xxe = (f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           f'<w:document {ns}><w:body><w:p><w:r><w:t>Hi &x;</w:t></w:r></w:p></w:body></w:document>')
    entities = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    laughs = (f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY l0 "lol">{entities}]>'
              f'<w:document {ns}><w:body><w:p><w:r><w:t>&l9;</w:t></w:r></w:p></w:body></w:document>')
    for name, xml in (("xxe.docx", xxe), ("laughs.docx", laughs)):
        with zipfile.ZipFile(tmp_path / name, "w") as z:
            z.writestr("word/document.xml", xml)
        with pytest.raises(LoadError, match="cannot parse DOCX") as err:
            loading.load(tmp_path / name)
        assert "root:" not in err.value.reason


def test_deeply_nested_html_is_extracted_in_linear_time(tmp_path):
    n = 100_000
    p = tmp_path / "nested.html"
    p.write_text("<html><body>" + "<div>x" * n + "</div>" * n + "<p>End.</p></body></html>")
    started = time.process_time()
    text = loading.load(p).text
    assert time.process_time() - started < 5  # ~0.8 s CPU on a busy 2-core machine; the old way: ~11 min
    assert text == "x" * n + "\n\nEnd."


def test_unmatched_end_tags_and_unterminated_tags_cost_nothing(tmp_path):
    n = 100_000
    started = time.process_time()
    assert loading._html_text("<div>" * n + "</span>" * n + "Text.") == "Text."
    assert time.process_time() - started < 5  # ~0.6 s CPU: an end tag with nothing to close is O(1)
    started = time.process_time()
    assert loading._html_text("<p>Hi</p>" + "<a x" * n) == "Hi\n\n" + "<a x" * n
    assert loading._html_text("</" * n) == "</" * n
    assert time.process_time() - started < 5  # ~0.2 s; HTMLParser alone: 80,000 characters took 41 s


def test_html_past_the_char_limit_is_refused_while_parsing(tmp_path):
    p = tmp_path / "long.html"
    p.write_text("<html><body>" + "<p>Some words in a paragraph.</p>" * 50_000 + "</body></html>")
    limits = loading.Limits(max_chars=100_000, max_unzipped_bytes=2**20, max_zip_ratio=100)
    with pytest.raises(LoadError, match="more than 100,000 characters of text"):
        loading.load(p, limits)


def test_html_blocks_are_separated_and_comments_dropped(tmp_path):
    p = tmp_path / "a.html"
    p.write_text("<!DOCTYPE html><html><body><!-- secret --><h1>Title</h1><div>One<br>Two</div>"
                 "<ul><li>A</li><li>B</li></ul><template>hidden</template>tail&nbsp; &amp; end</body></html>")
    assert loading.load(p).text == "Title\n\nOne\n\nTwo\n\nA\n\nB\n\ntail & end"
    # as BeautifulSoup's html.parser tree had it: an end tag closes up to its most recent open element
    messy = "<p>One <p>two <b>bold</span> text</b> more<div>in div</p> after</div>end<![CDATA[cd]]><embed>shown"
    assert loading._html_text(messy) == "One two bold text morein div\n\nafterendcdshown"
    assert loading._html_text("<html><head><title>T</title><body><p>Body</p></body></html>") == "Body"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_text_with_a_byte_order_mark_is_read(tmp_path, encoding):
    p = tmp_path / "bom.txt"
    text = "Caf\u00e9 cr\u00e8me.\r\nSecond line \u2014 fine."
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    p.write_bytes(data)
    assert loading.load(p).text == text.replace("\r\n", "\n")


def test_too_many_characters_are_refused_before_chunking(tmp_path):
    p = tmp_path / "line.txt"
    p.write_bytes(b"word " * 300_000)
    limits = loading.Limits(max_chars=1_000_000, max_unzipped_bytes=2**20, max_zip_ratio=100)
    with pytest.raises(LoadError, match=r"has 1,499,999 characters of text, more than the 1,000,000 limit"):
        loading.load(p, limits)


def test_encrypted_pdf_is_named(tmp_path):
    import pypdf

    writer = pypdf.PdfWriter(clone_from=make_pdf(tmp_path / "plain.pdf", ["Secret words."]))
    writer.encrypt(user_password="pw", owner_password="owner", algorithm="RC4-128")
    writer.write(tmp_path / "locked.pdf")
    with pytest.raises(LoadError, match="PDF is encrypted"):
        loading.load(tmp_path / "locked.pdf")


def test_a_damaged_pdf_names_the_pdf_problem_not_a_retry_wrapper(tmp_path):
    p = tmp_path / "cut.pdf"
    p.write_bytes(make_pdf(tmp_path / "whole.pdf", ["Words."]).read_bytes()[:150])
    with pytest.raises(LoadError) as err:
        loading.load(p)
    assert err.value.reason.startswith("cannot parse PDF (Pdf") and "RetryError" not in err.value.reason


def test_special_files_are_named_whether_given_directly_or_found_in_a_folder(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    os.mkfifo(folder / "pipe.txt")
    os.symlink("loop.txt", folder / "loop.txt")
    os.symlink("gone.txt", folder / "broken.txt")
    os.symlink(tmp_path, folder / "up")  # a link to a folder (here an ancestor) is named, not followed
    (folder / "empty.md").mkdir()
    (folder / "ok.txt").write_text("Fine.")
    found = list(loading.discover([folder]))
    assert [p.name for p in found] == ["broken.txt", "empty.md", "loop.txt", "ok.txt", "pipe.txt", "up"]
    reasons = {}
    for p in found:
        try:
            loading.load(p)
        except LoadError as exc:
            reasons[p.name] = exc.reason
    assert reasons == {
        "broken.txt": "broken symbolic link (its target 'gone.txt' does not exist)",
        "empty.md": "is an empty folder, not a file",
        "loop.txt": "symbolic link loop (the link leads back to itself)",
        "pipe.txt": "is a named pipe (FIFO), not a regular file",
        "up": "is a link to a folder; links inside a folder are not followed (give the folder itself to index it)",
    }
    # given on the command line: yielded (and named by load), not "does not exist" or silence
    assert list(loading.discover([folder / "pipe.txt", folder / "loop.txt"])) == [folder / "pipe.txt", folder / "loop.txt"]
    assert [p.name for p in loading.discover(["/dev/null"])] == ["null"]
    with pytest.raises(LoadError, match="is a device"):
        loading.load(Path("/dev/null"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file whatever its mode")
def test_permission_denied_is_named(tmp_path):
    p = tmp_path / "secret.txt"
    p.write_text("hidden")
    p.chmod(0)
    with pytest.raises(LoadError, match="permission denied"):
        loading.load(p)


def test_docx_is_streamed_with_headers_tabs_breaks_and_tables_and_stops_at_the_char_limit(tmp_path):
    ns = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    body = ('<w:p><w:r><w:t xml:space="preserve">A </w:t><w:tab/><w:t>b</w:t><w:br/><w:t>c</w:t></w:r></w:p>'
            '<w:tbl><w:tr><w:tc><w:p><w:r><w:t>cell</w:t></w:r></w:p></w:tc></w:tr></w:tbl>')
    p = tmp_path / "parts.docx"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("word/header1.xml", f"<w:hdr {ns}><w:p><w:r><w:t>HEADER</w:t></w:r></w:p></w:hdr>")
        z.writestr("word/document.xml", f"<w:document {ns}><w:body>{body * 500}</w:body></w:document>")
        z.writestr("word/footer1.xml", f"<w:ftr {ns}><w:p><w:r><w:t>FOOTER</w:t></w:r></w:p></w:ftr>")
    text = loading.load(p).text  # what docx2txt gives for the same file
    assert text.startswith("HEADER\n\nA \tb\nc\n\ncell\n\nA \t") and text.endswith("cell\n\nFOOTER")
    limits = loading.Limits(max_chars=1_000, max_unzipped_bytes=2**20, max_zip_ratio=100)
    with pytest.raises(LoadError, match="more than 1,000 characters of text"):
        loading.load(p, limits)


def test_permission_denied_is_named_even_as_root(tmp_path, monkeypatch):
    import errno

    p = tmp_path / "secret.txt"
    p.write_text("hidden")

    def denied(path, flags):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(loading.os, "open", denied)
    with pytest.raises(LoadError) as err:
        loading.load(p)
    assert err.value.reason == "permission denied"


def test_file_id_is_the_id_load_gives_without_parsing(tmp_path):
    p = make_pdf(tmp_path / "a.pdf", ["Some words on a page."])
    assert loading.file_id(p) == loading.load(p).id
    assert loading.file_id(tmp_path / "missing.txt") is None
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    assert loading.file_id(tmp_path / "image.png") is None  # unsupported: load names why
    big = tmp_path / "big.txt"
    big.write_text("x" * 100)
    assert loading.file_id(big, max_bytes=10) is None
