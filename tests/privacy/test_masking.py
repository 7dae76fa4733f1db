"""Masking e-mails, phone numbers and URLs in item text, without masking years, prices, ISBNs."""

from __future__ import annotations

import pandas as pd
import pytest

from maasrec.data import ItemFeatures
from maasrec.exceptions import DataError
from maasrec.privacy import TextMasker, find_pii, mask_features, mask_text

EMAILS = ["jane.doe+books@example.co.uk", "user.name+tag+sorting@example.com", "x@y.io",
          "o'brien_99@mail.example.org", "first-last%dept@sub.domain.travel"]
PHONES = ["+44 20 7946 0958", "+1 (555) 123-4567", "(555) 123-4567", "555-123-4567",
          "555.123.4567", "+49 30 12345678", "+33 1 23 45 67 89", "+81-3-1234-5678",
          "+91 98765 43210", "0044 20 7946 0958", "020 7946 0958", "0800 123 456",
          "06 12 34 56 78", "+61 2 9374 4000", "+55 11 91234-5678", "+86 10 1234 5678"]
URLS = ["https://example.com/p?id=12&ref=abc#top", "http://shop.example.de/a/b?x=1&y=%20z",
        "www.shop.de/item?id=5", "example.org/path/to?q=1", "ftp://files.example.net/a.zip",
        "https://en.wikipedia.org/wiki/Python_(programming_language)",
        "https://192.168.0.1:8080/admin"]
KEEP = ["First edition 1999, reprinted 2004.", "Covers 1990-2005 and 2010–2015.",
        "Price: $1,299.99 (was €1.499,00).", "Only EUR 1 299 999 for the villa.",
        "USD 12 345 678 in sales", "ISBN 978-3-16-148410-0", "ISBN-10: 0-306-40615-2",
        "ISBN 0306406152", "9783161484100 (13-digit ISBN without the word)",
        "Released 2023-01-15, on 06.12.2021 and 12/05/2021 at 10:30.",
        "Barcode 5901234123457, SKU 123456789012, order #4432123.",
        "Resolution 1920x1080, 4K 3840 x 2160, version 1.2.3.4, pages 100-200.",
        "Track 3 of 12, 4.5 stars from 1,234 reviews, 2 x 500 ml.",
        "Part no. 12-345-67, size 38 40 42 44", "Catalogue 0-306-40615-2 (ISBN-10 shape)",
        "Node.js and ASP.NET handbook, e.g. chapter 3.2."]


@pytest.mark.parametrize("email", EMAILS)
def test_emails(email):
    assert mask_text(f"Contact {email}, thanks.") == "Contact [EMAIL], thanks."


@pytest.mark.parametrize("phone", PHONES)
def test_phone_numbers(phone):
    assert mask_text(f"Call {phone} today.") == "Call [PHONE] today."
    assert mask_text(f"({phone})") == "([PHONE])" or phone.startswith("(")


@pytest.mark.parametrize("url", URLS)
def test_urls_keep_trailing_punctuation(url):
    assert mask_text(f"See {url}.") == "See [URL]."
    assert mask_text(f"<a>{url}</a>, ok") in ("<a>[URL]</a>, ok", "<a>[URL], ok")


@pytest.mark.parametrize("text", KEEP)
def test_no_false_positives(text):
    assert mask_text(text) == text, find_pii(text)


def test_context_words_unlock_bare_numbers():
    assert mask_text("Tel: 12345678") == "Tel: [PHONE]"
    assert mask_text("whatsapp 07700900123") == "whatsapp [PHONE]"
    assert mask_text("Fax no. 1 800 555 0199") == "Fax no. [PHONE]"
    assert mask_text("item 12345678") == "item 12345678"


def test_a_year_before_a_phone_number_stays():
    assert mask_text("in 2019 555-123-4567") == "in 2019 [PHONE]"


def test_mixed_realistic_description():
    text = ("Signed copy (ISBN 978-0-13-468599-1, 2nd ed. 2018) for $45.50. Questions: "
            "seller+books@shop.example.com, +1 415-555-0132, or https://shop.example.com/"
            "item/42?utm_source=mail&ref=a1. Ships in 3-5 days.")
    assert mask_text(text) == (
        "Signed copy (ISBN 978-0-13-468599-1, 2nd ed. 2018) for $45.50. Questions: "
        "[EMAIL], [PHONE], or [URL]. Ships in 3-5 days.")
    kinds = [s.kind for s in find_pii(text)]
    assert kinds == ["email", "phone", "url"]


def test_kinds_and_tokens():
    text = "mail a@b.com or call +44 20 7946 0958"
    assert mask_text(text, kinds=["email"]) == "mail [EMAIL] or call +44 20 7946 0958"
    assert TextMasker(tokens={"phone": "<tel>"}).mask(text) == "mail [EMAIL] or call <tel>"
    assert TextMasker().mask_many([text, None]) == ["mail [EMAIL] or call [PHONE]", None]
    with pytest.raises(DataError, match="unknown kind"):
        mask_text(text, kinds=["ssn"])
    with pytest.raises(DataError, match="must be a str"):
        mask_text(42)


def test_item_features_are_copied_with_masked_text():
    df = pd.DataFrame({"item": [1, 2, 3], "title": ["Call 555-123-4567", "Plain 1999", None],
                       "genre": ["a", "b", "a"]})
    feats = ItemFeatures.from_pandas(df, "item", text="title", categorical="genre")
    masked = mask_features(feats)
    assert masked.texts() == ["Call [PHONE]", "Plain 1999", ""]
    assert feats.texts()[0] == "Call 555-123-4567"  # the original is untouched
    assert masked.vocab is feats.vocab and masked.text_mask.tolist() == [True, True, False]
    with pytest.raises(DataError, match="ItemFeatures or UserFeatures"):
        mask_features(df)
