"""The text of a (user, candidate) pair, assembled from token ids tokenised once.

A template such as :data:`DEFAULT_TEMPLATE`::

    "{profile}History: {history}{sep}Candidate: {item}"

has three fields and one separator:

- ``{history}``: the texts of the user's most recent items, **most recent first**,
  joined by ``"; "`` (at most ``history_len`` items; the oldest are dropped first when
  the pair would exceed ``max_length`` tokens);
- ``{profile}``: the user's profile fields (``"age: 24, gender: M, occupation:
  technician. "``) when user features were given, else nothing;
- ``{item}``: the candidate's text;
- ``{sep}``: the boundary of the two segments of a sentence pair: the tokenizer's own
  pair encoding (``[CLS] A [SEP] B [SEP]`` with token types 0/1 for BERT); for
  tokenizers without pair tokens (GPT-2 and most decoders) a newline.

Every item text is tokenised once (and truncated to ``max_item_tokens``); each pair is
a concatenation of cached token ids, never a new call of the tokenizer. The ids are those
of tokenising the literal pieces and texts separately, which for WordPiece (BERT) and
byte-level BPE (GPT-2) is the tokenisation of the whole string; for other tokenizers
piece boundaries may tokenise slightly differently, identically in training and
inference.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..exceptions import DataError

__all__ = ["DEFAULT_TEMPLATE", "FIELDS", "PairBuilder", "UserPart", "parse_template"]

#: The default pair template (see the module docstring).
DEFAULT_TEMPLATE = "{profile}History: {history}{sep}Candidate: {item}"
#: The fields a template may use.
FIELDS = ("profile", "history", "item")
#: Separator of the history items.
HISTORY_JOINER = ";"
_PROBE = ("hello", "world")


@dataclass(frozen=True)
class _Part:
    kind: str  # "text" (a literal) or a field name
    text: str = ""
    spaced: bool = False  # the field follows whitespace: tokenise it with a leading space
    segment: int = 0


def parse_template(template: str) -> list[list[_Part]]:
    """Split a template into segments of literal and field parts.

    Parameters
    ----------
    template : str

    Returns
    -------
    list of list of parts
        One list per segment (one or two).

    Raises
    ------
    DataError
        Not a string, an unknown field, a format spec, a repeated field, more than one
        ``{sep}``, or no ``{item}``.
    """
    if not isinstance(template, str):
        raise DataError(f"template must be a str, got {type(template).__name__} {template!r}")
    pieces = template.split("{sep}")
    if len(pieces) > 2:
        raise DataError(f"template {template!r} has {len(pieces) - 1} '{{sep}}'; at most one "
                        f"separates the two segments of the pair")
    seen: set[str] = set()
    segments = []
    for s, piece in enumerate(pieces):
        try:
            parsed = list(string.Formatter().parse(piece))
        except ValueError as exc:
            raise DataError(f"template {template!r} is not a valid format string: {exc}") from exc
        parts: list[_Part] = []
        for literal, field, spec, conv in parsed:
            if literal:
                parts.append(_Part("text", literal, segment=s))
            if field is None:
                continue
            if field not in FIELDS:
                raise DataError(f"template {template!r} has unknown field {{{field}}}; fields "
                                f"are {', '.join('{' + f + '}' for f in (*FIELDS, 'sep'))}")
            if spec or conv:
                raise DataError(f"template field {{{field}}} may not have a format spec or "
                                f"conversion in {template!r}")
            if field in seen:
                raise DataError(f"template {template!r} uses {{{field}}} twice")
            seen.add(field)
            parts.append(_Part(field, segment=s))
        segments.append(parts)
    if "item" not in seen:
        raise DataError(f"template {template!r} has no {{item}} field (the candidate's text)")
    return segments


def _find(seq: list[int], sub: list[int], start: int = 0) -> int:
    n = len(sub)
    for i in range(start, len(seq) - n + 1):
        if seq[i:i + n] == sub:
            return i
    return -1


@dataclass
class UserPart:
    """The token ids of a pair around the candidate's text (one per user and history).

    Attributes
    ----------
    before, after : list of int
        Ids before and after the candidate's tokens.
    types_before, types_after : list of int
        Their token types.
    """

    before: list[int]
    after: list[int]
    types_before: list[int]
    types_after: list[int]

    def __len__(self) -> int:
        return len(self.before) + len(self.after)


class PairBuilder:
    """Assembles pair token ids from a template and cached item tokenisations.

    Parameters
    ----------
    tokenizer : transformers tokenizer
    template : str
    max_length : int
        Maximum tokens per pair (special tokens included).
    max_item_tokens : int
        Each item text (history or candidate) is cut to this many tokens.
    is_decoder : bool
        Decoder (GPT-style) models get an end-of-sequence token appended when the
        tokenizer adds none, so the last-token head reads a fixed token.
    """

    def __init__(self, tokenizer, template: str, *, max_length: int, max_item_tokens: int,
                 is_decoder: bool):
        self.tokenizer = tokenizer
        self.template = template
        self.max_length = int(max_length)
        self.max_item_tokens = int(max_item_tokens)
        self.is_decoder = bool(is_decoder)
        segments = parse_template(template)
        self._layout(len(segments))
        self._slots = self._build_slots(segments)
        self._item_slot = next(s for s in self._slots if s[0] == "field" and s[1] == "item")
        self._joiner = self._ids(HISTORY_JOINER)
        self._items_bare: list[list[int]] = []
        self._items_spaced: list[list[int]] = []
        self._item_budget = 0
        self._profile_cache: dict[str, tuple[list[int], list[int]]] = {}

    # -- setup ------------------------------------------------------------------------------
    def _ids(self, text: str) -> list[int]:
        if not text:
            return []
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _layout(self, n_segments: int) -> None:
        """Special tokens and token types of the tokenizer's single/pair encoding."""
        tok = self.tokenizer
        a, b = self._ids(_PROBE[0]), self._ids(_PROBE[1])
        if n_segments == 2:
            enc = tok(_PROBE[0], _PROBE[1], add_special_tokens=True, return_token_type_ids=True)
        else:
            enc = tok(_PROBE[0], add_special_tokens=True, return_token_type_ids=True)
        ids = list(enc["input_ids"])
        types = list(enc.get("token_type_ids") or [0] * len(ids))
        i = _find(ids, a)
        j = _find(ids, b, i + len(a)) if (n_segments == 2 and i >= 0) else -1
        if i < 0 or (n_segments == 2 and j < 0):  # unusual tokenizer: CLS/SEP if it has them
            cls = [tok.cls_token_id] if tok.cls_token_id is not None else []
            sep = [tok.sep_token_id] if tok.sep_token_id is not None else []
            self._specials = [cls, sep if n_segments == 2 else [], sep]
            self._special_types = [[0] * len(cls), [0] * len(sep) if n_segments == 2 else [],
                                   [n_segments - 1] * len(sep)]
            self._segment_types = [0, 1]
        elif n_segments == 2:
            self._specials = [ids[:i], ids[i + len(a):j], ids[j + len(b):]]
            self._special_types = [types[:i], types[i + len(a):j], types[j + len(b):]]
            self._segment_types = [types[i], types[j]]
        else:
            self._specials = [ids[:i], [], ids[i + len(a):]]
            self._special_types = [types[:i], [], types[i + len(a):]]
            self._segment_types = [types[i], types[i]]
        self.uses_token_types = any(t != 0 for t in types) or (n_segments == 2 and (
            self._segment_types[1] != self._segment_types[0]))
        self._sep_text = "\n" if (n_segments == 2 and not self._specials[1]) else ""
        if self.is_decoder and not self._specials[2] and tok.eos_token_id is not None:
            self._specials[2] = [tok.eos_token_id]
            self._special_types[2] = [self._segment_types[n_segments - 1]]

    def _build_slots(self, segments: list[list[_Part]]) -> list[tuple]:
        """Flatten into ("ids", ids, type) and ("field", name, spaced, type) slots."""
        slots: list[tuple] = []
        for s, parts in enumerate(segments):
            if s == 0:
                slots.append(("ids", self._specials[0], self._special_types[0]))
            else:
                slots.append(("ids", self._specials[1], self._special_types[1]))
                if self._sep_text:
                    parts = [_Part("text", self._sep_text, segment=1), *parts]
            seg_type = self._segment_types[s]
            prev = None  # None at the segment start, else "text"/"field"
            for k, p in enumerate(parts):
                if p.kind == "text":
                    nxt = parts[k + 1] if k + 1 < len(parts) else None
                    text = p.text.rstrip() if nxt is None or nxt.kind != "text" else p.text
                    ids = self._ids(text) if text.strip() or text == "\n" else []
                    if ids:
                        slots.append(("ids", ids, [seg_type] * len(ids)))
                    prev = ("space" if p.text != p.text.rstrip() or (prev is not None and not ids)
                            else "text")
                else:
                    spaced = prev in ("space", "field")
                    slots.append(("field", p.kind, spaced, seg_type))
                    prev = "field"
        slots.append(("ids", self._specials[2], self._special_types[2]))
        return slots

    def set_items(self, texts: Sequence[str]) -> None:
        """Tokenise every item text once (bare and with a leading space).

        Parameters
        ----------
        texts : sequence of str
            One text per item index.
        """
        texts = [str(t) for t in texts]
        cut = self.max_item_tokens
        if texts:
            bare = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
            spaced = self.tokenizer([" " + t for t in texts], add_special_tokens=False)["input_ids"]
        else:
            bare = spaced = []
        self._items_bare = [list(x[:cut]) for x in bare]
        self._items_spaced = [list(x[:cut]) for x in spaced]
        longest = max((len(x) for x in (*self._items_bare, *self._items_spaced)), default=1)
        self._item_budget = max(1, min(cut, longest))
        fixed = sum(len(s[1]) for s in self._slots if s[0] == "ids")
        if fixed + self._item_budget > self.max_length:
            raise DataError(
                f"max_length={self.max_length} is too small for template {self.template!r}: its "
                f"literal and special tokens take {fixed} and a candidate's text up to "
                f"{self._item_budget} (max_item_tokens={cut}); raise max_length or shorten the "
                f"template")

    @property
    def n_items(self) -> int:
        """int: number of tokenised items."""
        return len(self._items_bare)

    def item_tokens(self, item: int, spaced: bool = True) -> list[int]:
        """Cached token ids of an item text.

        Parameters
        ----------
        item : int
            Item index.
        spaced : bool, default True

        Returns
        -------
        list of int
        """
        return (self._items_spaced if spaced else self._items_bare)[item]

    # -- users ------------------------------------------------------------------------------
    def _profile(self, text: str, spaced: bool, budget: int) -> list[int]:
        if not text:
            return []
        if text not in self._profile_cache:
            self._profile_cache[text] = (self._ids(text), self._ids(" " + text))
        return self._profile_cache[text][1 if spaced else 0][:budget]

    def user_part(self, history: Sequence[int] | np.ndarray, profile: str = "") -> UserPart:
        """Token ids around the candidate for one user.

        Parameters
        ----------
        history : sequence of int
            Item indices, oldest first (the caller keeps at most ``history_len``).
        profile : str, default ""
            Profile text (see :func:`profile_text`).

        Returns
        -------
        UserPart
        """
        fixed = sum(len(s[1]) for s in self._slots if s[0] == "ids") + self._item_budget
        prof_slot = next((s for s in self._slots if s[0] == "field" and s[1] == "profile"), None)
        prof = self._profile(profile, prof_slot[2], max(0, self.max_length // 4)) if (
            prof_slot is not None) else []
        budget = self.max_length - fixed - len(prof)
        hist: list[int] = []
        hist_slot = next((s for s in self._slots if s[0] == "field" and s[1] == "history"), None)
        if hist_slot is not None:
            for n, item in enumerate(reversed(list(history))):  # most recent first
                toks = self.item_tokens(int(item), spaced=hist_slot[2] or n > 0)
                extra = self._joiner if n else []
                room = budget - len(hist) - len(extra)
                if room <= 0:
                    break
                if len(toks) > room:
                    if n == 0:  # the most recent item is kept, cut
                        hist = toks[:room]
                    break
                hist = hist + extra + toks
        before: list[int] = []
        tb: list[int] = []
        after: list[int] = []
        ta: list[int] = []
        out, types = before, tb
        for s in self._slots:
            if s[0] == "ids":
                out.extend(s[1])
                types.extend(s[2])
            elif s[1] == "item":
                out, types = after, ta
            else:
                ids = prof if s[1] == "profile" else hist
                out.extend(ids)
                types.extend([s[3]] * len(ids))
        return UserPart(before, after, tb, ta)

    def pair(self, part: UserPart, item: int) -> tuple[list[int], list[int]]:
        """Token ids and token types of one (user, candidate) pair.

        Parameters
        ----------
        part : UserPart
        item : int
            Candidate item index.

        Returns
        -------
        ids : list of int
        types : list of int
        """
        slot = self._item_slot
        toks = self.item_tokens(item, spaced=slot[2])[: self._item_budget]
        return (part.before + toks + part.after,
                part.types_before + [slot[3]] * len(toks) + part.types_after)

    def pair_text(self, part: UserPart, item: int) -> str:
        """The decoded text of a pair (for inspection and debugging).

        Parameters
        ----------
        part : UserPart
        item : int

        Returns
        -------
        str
        """
        return self.tokenizer.decode(self.pair(part, item)[0])


def profile_text(fields: Sequence[tuple[str, str]]) -> str:
    """Render profile fields as ``"name: value, name: value. "``.

    Parameters
    ----------
    fields : sequence of (name, value)
        Missing values are left out by the caller.

    Returns
    -------
    str
        ``""`` when there is no field.
    """
    if not fields:
        return ""
    return ", ".join(f"{k}: {v}" for k, v in fields) + ". "
