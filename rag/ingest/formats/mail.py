"""E-mails (.eml) through the standard library's `email` package: one document per message.

The text starts with a header of the subject, sender and date, then the plain-text body (or, when
there is none, the HTML body through the HTML text extractor). Attachments (and inline parts other
than the body) are ignored: neither their text nor their names are indexed. The message is one
section labelled `e-mail "Subject" from Sender, 2024-03-05`, so every citation of it says which
e-mail it is. A multipart message whose boundaries do not close (a truncated file) is refused."""
from __future__ import annotations

from email import errors, policy
from email.parser import BytesParser
from email.utils import parsedate_to_datetime

from rag.ingest.formats.common import Extracted, Parts, Source, clean

_TRUNCATED = (errors.StartBoundaryNotFoundDefect, errors.CloseBoundaryNotFoundDefect)


def read_eml(source: Source) -> Extracted:
    try:
        message = BytesParser(policy=policy.default).parsebytes(source.data)
        subject = " ".join(str(message.get("subject") or "").split())
        sender = " ".join(str(message.get("from") or "").split())
        date_raw = str(message.get("date") or "").strip()
    except (ValueError, TypeError, LookupError, errors.MessageError) as exc:
        raise source.fail(f"cannot parse e-mail ({type(exc).__name__}: {exc})") from exc
    if not (subject or sender or date_raw):
        raise source.fail("is not an e-mail: it has no Subject, From or Date header")
    defects = [d for part in message.walk() for d in part.defects if isinstance(d, _TRUNCATED)]
    if defects:
        raise source.fail(f"cannot parse e-mail: truncated or damaged ({type(defects[0]).__name__})")
    body = _body(source, message)
    date = _date(date_raw)
    header = "\n".join(f"{k}: {v}" for k, v in (("Subject", subject), ("From", sender), ("Date", date)) if v)
    label = "e-mail" + (f' "{subject}"' if subject else "") + (f" from {sender}" if sender else "") + \
        (f", {date}" if date else "")
    parts = Parts(source)
    parts.add(label, header + "\n\n" + body)
    return parts.result()


def _body(source: Source, message) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError, UnicodeError, AttributeError) as exc:
        raise source.fail(f"cannot decode the e-mail's body ({type(exc).__name__}: {exc})") from exc
    if not isinstance(content, str):
        return ""
    if len(content) > source.max_chars:
        raise source.fail(f"has more than {source.max_chars:,} characters of text, more than the limit "
                          "(setting max_file_chars)")
    if part.get_content_subtype() == "html":
        return source.html_text(content, source.name, source.max_chars)
    return clean(content)


def _date(raw: str) -> str:
    """The date as YYYY-MM-DD when it parses, else as written."""
    if not raw:
        return ""
    try:
        return parsedate_to_datetime(raw).date().isoformat()
    except (TypeError, ValueError, IndexError):
        return raw
