"""Request and response bodies of the HTTP API (pydantic models, published as OpenAPI).

Ids
---
Raw user and item ids travel as JSON integers or strings. The server converts each id to
the kind of id the served model was fitted on (``IdVocab.id_kind``), so ``"1"`` and ``1``
behave predictably:

* a model with **integer** ids accepts ``1`` and ``"1"`` (a string of decimal digits,
  optionally signed) as the same id; any other string (``"abc"``, ``"1.0"``) is an
  unknown id (404);
* a model with **string** ids accepts ``"1"`` and ``1`` as the same id (integers are
  formatted in decimal);
* a model with **float** ids accepts integers and numeric strings;
* models with mixed (``object``) ids get the JSON value unchanged.

Responses always carry ids in the model's own kind (a JSON integer for integer ids).

Padding
-------
``recommend`` in Python pads rows that have fewer than ``k`` candidates (score
``-inf``). The HTTP API drops padding entries, so a per-user list may be **shorter than
k** (for example when ``exclude_seen`` removes most of a small catalogue, or an
allow-list has fewer than ``k`` items).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

__all__ = [
    "ErrorResponse",
    "HealthResponse",
    "Id",
    "ModelInfo",
    "Ranking",
    "RecommendRequest",
    "RecommendResponse",
    "ReloadRequest",
    "ReloadResponse",
    "ScoreRequest",
    "ScoreResponse",
    "SimilarItemsRequest",
    "SimilarItemsResponse",
    "SimilarRanking",
]

#: Longest accepted string id (longer strings are rejected with 422 before any lookup).
MAX_ID_LENGTH = 512

#: A raw user or item id in a request: a JSON integer or string (booleans and floats are
#: rejected; see the module docstring for how ids are matched to the model's id kind).
Id = Annotated[
    StrictInt | Annotated[StrictStr, Field(max_length=MAX_ID_LENGTH)],
    Field(description="A raw user or item id: JSON integer or string"),
]

#: An id in a response, in the model's own kind.
OutId = Annotated[int | float | str | bool,
                  Field(description="A raw id in the model's own kind")]

_STRICT = ConfigDict(strict=True, extra="forbid")


class RecommendRequest(BaseModel):
    """Body of ``POST /v1/recommend``.

    Give ``users`` (users known to the model) or ``history`` (one list of item ids per
    user the model has not seen: cold users). With ``history``, ``users`` is optional and
    only labels the results (it may name unknown users).
    """

    model_config = _STRICT

    users: list[Id] | None = Field(
        None, description="Raw user ids (at most the server's max_users per request)")
    history: list[list[Id]] | None = Field(
        None, description="One list of item ids per cold user; an empty list gets the most "
                          "popular items")
    k: StrictInt = Field(10, ge=1, description="Items per user (at most the server's max_k). "
                                              "Lists may be shorter than k: padding is dropped")
    exclude_seen: bool = Field(
        True, description="Never recommend items the user interacted with (in training, "
                          "or in the given history)")
    items: list[Id] | None = Field(
        None, description="Allow-list: recommend only among these items (all users)")
    exclude: list[Id] | None = Field(
        None, description="Deny-list: never recommend these items (all users)")

    @model_validator(mode="after")
    def _users_or_history(self) -> RecommendRequest:
        if self.users is None and self.history is None:
            raise ValueError("give users (known user ids) or history (one list of item ids "
                             "per cold user)")
        if self.history is not None:
            if len(self.history) == 0:
                raise ValueError("history is empty; give one list of item ids per user")
            if self.users is not None and len(self.users) != len(self.history):
                raise ValueError(f"{len(self.users)} users but {len(self.history)} histories; "
                                 f"give one history per user")
        elif len(self.users or []) == 0:
            raise ValueError("users is empty; give at least one user id")
        return self


class Ranking(BaseModel):
    """Recommendations of one user, best first."""

    user: OutId | None = Field(description="The user id as requested (null for an unnamed "
                                            "history)")
    items: list[OutId] = Field(description="Item ids, best first (may be shorter than k)")
    scores: list[float] = Field(description="Scores of the items (higher is better)")


class RecommendResponse(BaseModel):
    """Body of a successful ``POST /v1/recommend``."""

    results: list[Ranking] = Field(description="One entry per requested user, in order")
    k: int
    model_version: int = Field(description="Counter of the served model (1 at start, +1 "
                                           "per successful reload)")


class SimilarItemsRequest(BaseModel):
    """Body of ``POST /v1/similar-items``."""

    model_config = _STRICT

    items: list[Id] = Field(min_length=1, description="Raw item ids (at most max_users)")
    k: StrictInt = Field(10, ge=1, description="Similar items per item (at most max_k)")


class SimilarRanking(BaseModel):
    """Items most similar to one item, best first (the item itself excluded)."""

    item: OutId
    items: list[OutId]
    scores: list[float]


class SimilarItemsResponse(BaseModel):
    """Body of a successful ``POST /v1/similar-items``."""

    results: list[SimilarRanking]
    k: int
    model_version: int


class ScoreRequest(BaseModel):
    """Body of ``POST /v1/score``: scores of (user, item) pairs."""

    model_config = _STRICT

    users: list[Id] = Field(min_length=1, description="User ids, one per pair")
    items: list[Id] = Field(min_length=1, description="Item ids, one per pair")

    @model_validator(mode="after")
    def _same_length(self) -> ScoreRequest:
        if len(self.users) != len(self.items):
            raise ValueError(f"users and items must have the same length (one pair each), "
                             f"got {len(self.users)} and {len(self.items)}")
        return self


class ScoreResponse(BaseModel):
    """Body of a successful ``POST /v1/score``."""

    scores: list[float | None] = Field(description="One score per pair (null if not finite)")
    model_version: int


class ReloadRequest(BaseModel):
    """Body of ``POST /v1/admin/reload`` (optional)."""

    model_config = _STRICT

    model_dir: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        None, description="Model directory on the server to load; default: the current one "
                          "(reload it after it was replaced)")


class ModelInfo(BaseModel):
    """Body of ``GET /v1/model``: what is being served."""

    model_config = ConfigDict(populate_by_name=True)

    model_class: str = Field(alias="class", description="Class of the model")
    params: dict[str, Any] = Field(description="Constructor parameters (as saved)")
    maasrec_version: str | None = Field(description="maasrec version that saved the model")
    server_maasrec_version: str = Field(description="maasrec version of this server")
    n_users: int
    n_items: int
    user_id_kind: str
    item_id_kind: str
    fitted_at: str | None = Field(description="When fit ended (ISO 8601)")
    saved_at: str | None = Field(description="When the model was saved (ISO 8601)")
    loaded_at: str = Field(description="When this server loaded it (ISO 8601)")
    model_dir: str | None
    model_version: int = Field(description="1 at start, +1 per successful reload")
    supports_history: bool


class ReloadResponse(BaseModel):
    """Body of a successful reload."""

    previous_version: int
    model: ModelInfo


class HealthResponse(BaseModel):
    """Body of ``/healthz`` and ``/readyz``."""

    status: str
    model_version: int | None = None


class ErrorResponse(BaseModel):
    """Body of every error response."""

    error: str = Field(description="Error type, e.g. UnknownIdError, DataError, "
                                   "AuthenticationError, ModelFormatError")
    detail: str = Field(description="Human-readable message")
    ids: list[OutId] | None = Field(None, description="Unknown ids (UnknownIdError)")
    kind: str | None = Field(None, description='"user" or "item" (UnknownIdError)')
    errors: list[dict[str, Any]] | None = Field(None, description="Validation errors")
