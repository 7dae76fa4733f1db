"""Mask e-mail addresses, phone numbers and URLs in text before a language model sees it.

>>> mask_text("Write to jane.doe+books@example.co.uk or call +44 20 7946 0958.")
'Write to [EMAIL] or call [PHONE].'
>>> mask_text("First edition 1999, 2nd print, $1,299.99, ISBN 978-3-16-148410-0.")
'First edition 1999, 2nd print, $1,299.99, ISBN 978-3-16-148410-0.'

Rules, in order (each span is masked once):

- **e-mail**: ``local@domain.tld`` with the RFC 5322 characters of the local part
  (plus-addressing, dots, ``_%+-``), a dotted domain and a 2+ letter top-level domain;
- **URL**: ``scheme://...`` (http, https, ftp) or ``www.``..., and bare ``host.tld/path``
  for common top-level domains; trailing punctuation is left outside the mask;
- **phone**: 7 to 15 digits with the usual separators (spaces, ``-``, ``.``, brackets)
  that look like a phone number: an international prefix (``+44 ...``, ``0044 ...``),
  a trunk ``0`` (``020 7946 0958``, ``06 12 34 56 78``), a bracketed area code
  (``(555) 123-4567``), the North American ``555-123-4567`` shape, or any digit run after
  a word such as *tel*, *phone*, *call*, *mobile*, *fax*. Not masked: years and year
  ranges, dates (``2023-01-15``, ``06.12.2021``), prices (a currency sign or code next to
  the number), ISBN-10/13 (checksum, or the word ISBN before it), and digit runs without
  separators or context (barcodes, SKUs).

Masking is a heuristic: it removes the common forms; it is no guarantee of anonymity.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..data.features import Features
from ..exceptions import DataError

__all__ = ["TextMasker", "find_pii", "mask_features", "mask_text"]

KINDS = ("email", "url", "phone")
_DEFAULT_TOKENS = {"email": "[EMAIL]", "url": "[URL]", "phone": "[PHONE]"}

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])")
_TLDS = ("com|org|net|edu|gov|io|co|uk|de|fr|es|it|nl|eu|jp|cn|in|ru|br|au|ca|info|biz|me|"
         "ly|app|dev|ai|tv|us")
_URL = re.compile(
    r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"'`]+"
    r"|(?<![\w@.-])(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+(?:" + _TLDS + r")"
    r"(?::\d{1,5})?/[^\s<>\"'`]*", re.IGNORECASE)
_URL_TRAIL = ".,;:!?)]}'\""
_PHONE = re.compile(
    r"(?<![\w.,/+-])(?P<intl>\+|00(?=[1-9]))?[ ]?"
    r"(?:\(\d{1,5}\)|\d{1,5})(?:[ \u00a0]?[-.]?[ \u00a0]?(?:\(\d{1,5}\)|\d{1,6})){0,6}"
    r"(?![\w]|[.,/-]\d)")
_CONTEXT = re.compile(r"(?:\b(?:tel|telephone|phone|ph|call|mobile|mob|cell|fax|whatsapp|"
                      r"sms|text|hotline|contact)\b\.?|☎|📞)\s*(?:no\.?|number|#|nr\.?)?\s*"
                      r"[:.]?\s*$", re.IGNORECASE)
_ISBN_BEFORE = re.compile(r"\b(?:isbn(?:-1[03])?|issn)\b\s*[:#]?\s*$", re.IGNORECASE)
_CURRENCY = re.compile(r"(?:[$€£¥₹₩₽¢]|\b(?:usd|eur|gbp|jpy|chf|cad|aud|inr|rs\.?|us\$))\s*$",
                       re.IGNORECASE)
_CURRENCY_AFTER = re.compile(r"^\s*(?:[$€£¥₹₩₽]|(?:usd|eur|gbp|jpy|chf|cad|aud|inr|dollars?|"
                             r"euros?|pounds?|yen)\b)", re.IGNORECASE)


@dataclass(frozen=True)
class Span:
    """One masked span: ``text[start:end]`` is a ``kind`` ("email", "url", "phone")."""

    start: int
    end: int
    kind: str


def _isbn10_ok(d: str) -> bool:
    if len(d) != 10 or not d[:9].isdigit() or not (d[9].isdigit() or d[9] in "xX"):
        return False
    total = sum((10 - i) * int(c) for i, c in enumerate(d[:9]))
    total += 10 if d[9] in "xX" else int(d[9])
    return total % 11 == 0


def _isbn13_ok(d: str) -> bool:
    if len(d) != 13 or not d.isdigit() or d[:3] not in ("978", "979"):
        return False
    return sum(int(c) * (1 if i % 2 == 0 else 3) for i, c in enumerate(d)) % 10 == 0


def _date_like(groups: list[str]) -> bool:
    lens = [len(g) for g in groups]
    if lens == [4, 2, 2]:
        y, a, b = (int(g) for g in groups)
        return 1000 <= y <= 2999 and 1 <= a <= 12 and 1 <= b <= 31
    if lens in ([2, 2, 4], [1, 2, 4], [2, 1, 4], [1, 1, 4], [2, 2, 2]):
        a, b, y = (int(g) for g in groups)
        return 1 <= a <= 31 and 1 <= b <= 31 and (len(groups[2]) == 2 or 1000 <= y <= 2999)
    return False


def _year_range(groups: list[str]) -> bool:
    return (len(groups) == 2 and all(len(g) == 4 for g in groups)
            and all(1000 <= int(g) <= 2999 for g in groups))


def _is_phone(m: re.Match, text: str) -> bool:
    cand = m.group(0).strip()
    digits = re.sub(r"\D", "", cand)
    intl = m.group("intl") is not None
    if intl and cand.startswith("00"):
        digits = digits[2:]
    if not 7 <= len(digits) <= 15:
        return False
    before, after = text[:m.start()], text[m.end():]
    groups = re.findall(r"\d+", cand)
    if _CURRENCY.search(before) or _CURRENCY_AFTER.match(after):
        return False
    raw = re.sub(r"[^\dXx]", "", cand)
    if _ISBN_BEFORE.search(before) or _isbn13_ok(raw):
        return False
    if _isbn10_ok(raw) and len(groups) == 4 and "-" in cand:
        return False
    if _date_like(groups) or _year_range(groups):
        return False
    if _CONTEXT.search(before[-40:]):
        return True
    if intl:
        return len(groups) >= 2 or len(digits) >= 9
    if len(groups) < 2:
        return False  # a bare digit run: barcode, SKU, order number
    if cand.startswith("(") or re.match(r"\d{1,3}[ .-]?\(", cand):
        return True  # (555) 123-4567, 0 (30) 1234567
    if cand.startswith("0"):
        return len(digits) >= 9 and min(len(g) for g in groups[1:]) >= 2
    seps = set(re.findall(r"[^\d]+", cand))
    return [len(g) for g in groups] == [3, 3, 4] and len(seps) == 1


def _phone_spans(text: str, taken: list[tuple[int, int]]) -> list[Span]:
    out = []
    for m in _PHONE.finditer(text):
        if any(s < m.end() and m.start() < e for s, e in taken):
            continue
        if _is_phone(m, text):
            start = m.start() + (len(m.group(0)) - len(m.group(0).lstrip()))
            out.append(Span(start, m.end(), "phone"))
            continue
        # "in 2019 555-123-4567": retry without the leading groups
        cand = m.group(0)
        for sub in re.finditer(r"[ ]+(?=[\d(])", cand):
            m2 = _PHONE.match(text, m.start() + sub.end(), m.end())
            if m2 and m2.end() == m.end() and _is_phone(m2, text):
                out.append(Span(m2.start(), m2.end(), "phone"))
                break
    return out


def find_pii(text: str, kinds: Sequence[str] = KINDS) -> list[Span]:
    """The spans of ``text`` that :func:`mask_text` would mask, in order.

    Parameters
    ----------
    text : str
    kinds : sequence of {"email", "url", "phone"}

    Returns
    -------
    list of Span
    """
    if not isinstance(text, str):
        raise DataError(f"text must be a str, got {type(text).__name__}")
    kinds = _check_kinds(kinds)
    spans: list[Span] = []
    taken: list[tuple[int, int]] = []

    def free(s: int, e: int) -> bool:
        return not any(a < e and s < b for a, b in taken)

    if "email" in kinds:
        for m in _EMAIL.finditer(text):
            spans.append(Span(m.start(), m.end(), "email"))
            taken.append((m.start(), m.end()))
    if "url" in kinds:
        for m in _URL.finditer(text):
            end = m.end()
            while end > m.start() and text[end - 1] in _URL_TRAIL:
                if text[end - 1] == ")" and text[m.start():end].count("(") >= \
                        text[m.start():end].count(")"):
                    break  # a balanced bracket belongs to the URL (Wikipedia links)
                end -= 1
            if free(m.start(), end):
                spans.append(Span(m.start(), end, "url"))
                taken.append((m.start(), end))
    if "phone" in kinds:
        spans.extend(_phone_spans(text, taken))
    return sorted(spans, key=lambda s: s.start)


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    if isinstance(kinds, str):
        kinds = (kinds,)
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise DataError(f"unknown kind(s) {bad}; choose from {list(KINDS)}")
    return kinds


class TextMasker:
    """Masks chosen kinds of personal data in text, with chosen replacement tokens.

    Parameters
    ----------
    kinds : sequence of {"email", "url", "phone"}, default all three
    tokens : dict, optional
        Replacement per kind; default ``[EMAIL]``, ``[URL]``, ``[PHONE]``.
    """

    def __init__(self, kinds: Sequence[str] = KINDS, tokens: dict[str, str] | None = None):
        self.kinds = _check_kinds(kinds)
        self.tokens = {**_DEFAULT_TOKENS, **(tokens or {})}
        bad = [k for k in self.tokens if k not in KINDS]
        if bad:
            raise DataError(f"tokens names unknown kind(s) {bad}; choose from {list(KINDS)}")

    def mask(self, text: str) -> str:
        """``text`` with every found span replaced by its kind's token."""
        out, pos = [], 0
        for s in find_pii(text, self.kinds):
            out.append(text[pos:s.start])
            out.append(self.tokens[s.kind])
            pos = s.end
        out.append(text[pos:])
        return "".join(out)

    def mask_many(self, texts: Iterable) -> list:
        """:meth:`mask` over texts; None and NaN stay as they are."""
        return [t if not isinstance(t, str) else self.mask(t) for t in texts]

    def mask_features(self, features: Features) -> Features:
        """A copy of item/user features with the text block masked (others shared)."""
        if not isinstance(features, Features):
            raise DataError(f"mask_features needs ItemFeatures or UserFeatures, got "
                            f"{type(features).__name__}")
        out = copy.copy(features)
        if features.text is not None:
            masked = np.empty(len(features.text), dtype=object)
            masked[:] = [self.mask(str(t)) for t in features.text]
            out.text = masked
        return out


def mask_text(text: str, kinds: Sequence[str] = KINDS) -> str:
    """Replace e-mail addresses, URLs and phone numbers in ``text`` by ``[EMAIL]``,
    ``[URL]``, ``[PHONE]``.

    Parameters
    ----------
    text : str
    kinds : sequence of {"email", "url", "phone"}, default all three

    Returns
    -------
    str
    """
    return TextMasker(kinds).mask(text)


def mask_features(features: Features, kinds: Sequence[str] = KINDS) -> Features:
    """A copy of ``ItemFeatures``/``UserFeatures`` with its text masked (see :func:`mask_text`).

    Parameters
    ----------
    features : ItemFeatures or UserFeatures
    kinds : sequence of {"email", "url", "phone"}

    Returns
    -------
    Features
        Same class; categorical, numeric and vector blocks are shared, not copied.
    """
    return TextMasker(kinds).mask_features(features)
