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

from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    StrictStr,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema

__all__ = [
    "ErrorResponse",
    "EventsResponse",
    "ExplainResponse",
    "HealthResponse",
    "Id",
    "JsonInt",
    "ModelInfo",
    "Pair",
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
    "event_models",
    "request_models",
]

#: Longest accepted string id (longer strings are rejected with 422 before any lookup).
MAX_ID_LENGTH = 512


def _integral(v: Any) -> Any:
    # JSON Schema's "integer" includes 3.0: accept a float with no fractional part as
    # that integer (JSON parsers in many languages cannot tell 3 from 3.0); booleans,
    # 3.5 and non-finite values stay invalid.
    if isinstance(v, float) and not isinstance(v, bool) and v.is_integer():
        return int(v)
    return v


#: A JSON integer (``3.0`` counts as 3, as in JSON Schema; booleans are not integers).
JsonInt = Annotated[int, Strict(), BeforeValidator(_integral)]

#: A raw user or item id in a request: a JSON integer or string (booleans and
#: fractional numbers are rejected; see the module docstring for how ids are matched to
#: the model's id kind).
Id = Annotated[
    JsonInt | Annotated[StrictStr, Field(max_length=MAX_ID_LENGTH)],
    Field(description="A raw user or item id: JSON integer or string"),
]

#: An id in a response, in the model's own kind.
OutId = Annotated[int | float | str | bool,
                  Field(description="A raw id in the model's own kind")]

_STRICT = ConfigDict(strict=True, extra="forbid")


def _at_most(limit: int, what: str, name: str) -> AfterValidator:
    def check(v):
        if v is not None and len(v) > limit:
            raise ValueError(f"{len(v)} {what} in one request; this server accepts at most "
                             f"{limit} ({name}); split the request")
        return v
    return AfterValidator(check)


def _k_at_most(limit: int) -> AfterValidator:
    def check(k):
        if k > limit:
            raise ValueError(f"k={k} is larger than this server's limit of {limit} (max_k)")
        return k
    return AfterValidator(check)


def _schema_edit(required: Sequence[str] = (), one_of: Sequence[Sequence[str]] = (),
                 any_of: Sequence[Sequence[str]] = ()):
    """A ``json_schema_extra`` that states which fields are required (no null defaults):
    all of ``required``, exactly one group of ``one_of``, at least one group of ``any_of``."""
    def edit(schema: dict) -> None:
        props = schema.get("properties", {})
        groups = [n for group in [*one_of, *any_of] for n in group]
        for name in list(required) + groups:
            props.get(name, {}).pop("default", None)
        if required:
            schema["required"] = list(required)
        if one_of:
            schema["oneOf"] = [{"required": list(g)} for g in one_of]
        if any_of:
            schema["anyOf"] = [{"required": list(g)} for g in any_of]
    return edit


def request_models(*, max_k: int = 1000, max_users: int = 1000,
                   max_pairs: int = 10_000) -> tuple[type[BaseModel], ...]:
    """The request bodies of one server, with its limits in their JSON Schema.

    The published OpenAPI schema states what the server accepts: a request valid for
    the schema passes validation (it may still name unknown ids: 404), and one invalid
    for it is refused with 422. The limits (``maxItems``, ``maximum``) are the server's.

    Parameters
    ----------
    max_k, max_users, max_pairs : int
        See :func:`maasrec.serving.create_app`.

    Returns
    -------
    RecommendRequest, SimilarItemsRequest, ScoreRequest : type
    """
    K = Annotated[int, Strict(), BeforeValidator(_integral), Field(ge=1),
                  _k_at_most(max_k), WithJsonSchema({"type": "integer", "minimum": 1,
                                                     "maximum": max_k})]
    return (_recommend_request(K, max_users, max_pairs), _similar_items_request(K, max_users),
            _score_request(max_pairs))


def _recommend_request(K: Any, max_users: int, max_pairs: int) -> type[BaseModel]:
    """``RecommendRequest`` with ``k`` typed ``K`` and the server's list limits."""
    Users = Annotated[list[Id], Field(min_length=1, json_schema_extra={"maxItems": max_users}),
                      _at_most(max_users, "users", "max_users")]
    Histories = Annotated[
        list[Annotated[list[Id], Field(json_schema_extra={"maxItems": max_pairs}),
                       _at_most(max_pairs, "ids in one history", "max_pairs")]],
        Field(min_length=1, json_schema_extra={"maxItems": max_users}),
        _at_most(max_users, "histories", "max_users")]
    ItemList = Annotated[list[Id], Field(json_schema_extra={"maxItems": max_pairs}),
                         _at_most(max_pairs, "ids in an item list", "max_pairs")]

    class RecommendRequest(BaseModel):
        """Body of ``POST /v1/recommend``.

        Give exactly one of ``users`` (users known to the model) or ``history`` (one list
        of item ids per user the model has not seen: cold users; ``results[].user`` is
        then null). Both at once is a 422, as the schema says (:class:`maasrec.Client`
        labels history results with its ``users`` argument itself).
        """

        model_config = ConfigDict(strict=True, extra="forbid",
                                  json_schema_extra=_schema_edit(one_of=[["users"],
                                                                         ["history"]]))

        users: Users = Field(None, description="Raw user ids (at most the server's "
                                               "max_users per request)")
        history: Histories = Field(
            None, description="One list of item ids per cold user (an empty list gets the "
                              "most popular items)")
        k: K = Field(10, description="Items per user (at most the server's max_k). Lists "
                                     "may be shorter than k: padding is dropped")
        exclude_seen: StrictBool = Field(
            True, description="Never recommend items the user interacted with (in training, "
                              "or in the given history)")
        items: ItemList = Field(
            None, description="Allow-list: recommend only among these items (all users)")
        exclude: ItemList = Field(
            None, description="Deny-list: never recommend these items (all users)")

        @model_validator(mode="after")
        def _users_or_history(self) -> RecommendRequest:
            if self.users is None and self.history is None:
                raise ValueError("give users (known user ids) or history (one list of item "
                                 "ids per cold user)")
            if self.history is not None and self.users is not None:
                raise ValueError(f"{len(self.users)} users and {len(self.history)} "
                                 f"histories; give users or history, not both (label the "
                                 f"histories' results on the client side)")
            return self

    return RecommendRequest


def _similar_items_request(K: Any, max_users: int) -> type[BaseModel]:
    """``SimilarItemsRequest`` with ``k`` typed ``K`` and at most ``max_users`` items."""

    class SimilarItemsRequest(BaseModel):
        """Body of ``POST /v1/similar-items``."""

        model_config = _STRICT

        items: Annotated[list[Id], Field(min_length=1, json_schema_extra={"maxItems": max_users}),
                         _at_most(max_users, "items", "max_users")] = Field(
            description="Raw item ids (at most max_users)")
        k: K = Field(10, description="Similar items per item (at most max_k)")

    return SimilarItemsRequest


def _score_request(max_pairs: int) -> type[BaseModel]:
    """``ScoreRequest`` with at most ``max_pairs`` pairs."""

    class ScoreRequest(BaseModel):
        """Body of ``POST /v1/score``: scores of (user, item) pairs.

        Compatibility: the older form ``{"users": [...], "items": [...]}`` (two lists of
        the same length) is still accepted but no longer part of the schema, which cannot
        say "same length"; give ``pairs``.
        """

        model_config = ConfigDict(strict=True, extra="forbid",
                                  json_schema_extra=_schema_edit(required=["pairs"]))

        pairs: Annotated[list[Pair], Field(min_length=1,
                                           json_schema_extra={"maxItems": max_pairs}),
                         _at_most(max_pairs, "pairs", "max_pairs")] = Field(
            None, description="(user, item) pairs to score (at most max_pairs)")
        users: SkipJsonSchema[list[Id]] = None
        items: SkipJsonSchema[list[Id]] = None

        @model_validator(mode="after")
        def _one_form(self) -> ScoreRequest:
            if self.pairs is not None:
                if self.users is not None or self.items is not None:
                    raise ValueError("give pairs, or users and items, not both")
                return self
            if self.users is None or self.items is None:
                raise ValueError('give pairs: [{"user": id, "item": id}, ...]')
            if len(self.users) != len(self.items):
                raise ValueError(f"users and items must have the same length (one pair "
                                 f"each), got {len(self.users)} and {len(self.items)}")
            if not self.users:
                raise ValueError("users is empty; give at least one pair")
            if len(self.users) > max_pairs:
                raise ValueError(f"{len(self.users)} pairs in one request; this server "
                                 f"accepts at most {max_pairs} (max_pairs); split the request")
            self.pairs = [Pair(user=u, item=i) for u, i in zip(self.users, self.items)]
            self.users = self.items = None
            return self

    return ScoreRequest


class Pair(BaseModel):
    """One (user, item) pair of ``POST /v1/score``."""

    model_config = _STRICT

    user: Id
    item: Id


RecommendRequest, SimilarItemsRequest, ScoreRequest = request_models()


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


class ScoreResponse(BaseModel):
    """Body of a successful ``POST /v1/score``."""

    scores: list[float | None] = Field(description="One score per pair (null if not finite)")
    model_version: int


class ReloadRequest(BaseModel):
    """Body of ``POST /v1/admin/reload`` (optional)."""

    model_config = _STRICT

    model_dir: Annotated[str, Field(min_length=1, max_length=4096)] | None = Field(
        None, description="Model directory to load, relative to the server's model root "
                          "(e.g. a name GET /v1/model shows); default: the current one "
                          "(reload it after it was replaced). Paths that leave the root "
                          "are refused (409)")


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
    model_name: str | None = Field(description="The model directory relative to the "
                                               "server's model root (null for an in-memory "
                                               "model); never an absolute path")
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


#: Longest accepted ``event_id``.
MAX_EVENT_ID_LENGTH = 200

_Finite = Annotated[float, Field(allow_inf_nan=False)]


def _finite_number(v: Any) -> Any:
    if isinstance(v, bool):
        raise ValueError("a number is required, not a boolean")
    if isinstance(v, int):
        return float(v)
    return v


FiniteFloat = Annotated[_Finite, BeforeValidator(_finite_number)]


def event_models(*, max_pairs: int = 10_000) -> tuple[type[BaseModel], type[BaseModel]]:
    """The bodies of ``POST /v1/events`` and ``POST /v1/explain`` (limits in the schema).

    Parameters
    ----------
    max_pairs : int
        Events per request at most (see :func:`maasrec.serving.create_app`).

    Returns
    -------
    EventsRequest, ExplainRequest : type
    """

    class EventIn(BaseModel):
        """One interaction event."""

        model_config = _STRICT

        event_id: Annotated[StrictStr, Field(min_length=1, max_length=MAX_EVENT_ID_LENGTH)] = \
            Field(description="Client-chosen unique id: posting it again is a no-op (safe "
                              "retries)")
        user: Id
        item: Id
        value: FiniteFloat | None = Field(
            None, description="Interaction value (default 1.0); replaces an earlier value "
                              "of the same (user, item)")
        time: FiniteFloat | None = Field(None, description="Event time (e.g. Unix seconds); "
                                                           "stored in the log")

    class EventsRequest(BaseModel):
        """Body of ``POST /v1/events``."""

        model_config = _STRICT

        events: Annotated[list[EventIn], Field(min_length=1,
                                               json_schema_extra={"maxItems": max_pairs}),
                          _at_most(max_pairs, "events", "max_pairs")]
        sync: StrictBool = Field(
            False, description="Answer only once the model-wide update that includes "
                               "these events is served (EASE defers it: by default the "
                               "answer comes once the events are logged and in the users' "
                               "histories, which the next recommendation reads)")

    class ExplainRequest(BaseModel):
        """Body of ``POST /v1/explain``: give ``user`` (a known user) or ``history``."""

        model_config = ConfigDict(strict=True, extra="forbid",
                                  json_schema_extra=_schema_edit(required=["item"],
                                                                 one_of=[["user"],
                                                                         ["history"]]))

        user: Id = Field(None, description="A user known to the served model")
        history: Annotated[list[Id], Field(json_schema_extra={"maxItems": max_pairs}),
                           _at_most(max_pairs, "ids in the history", "max_pairs")] = \
            Field(None, description="The history of a user the model does not know")
        item: Id = Field(description="The item to explain")
        n: Annotated[int, Strict(), BeforeValidator(_integral), Field(ge=1, le=100),
                     WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 100})] = \
            Field(5, description="Contributions returned (1 to 100)")

        @model_validator(mode="after")
        def _one_of(self) -> ExplainRequest:
            if (self.user is None) == (self.history is None):
                raise ValueError("give exactly one of user or history")
            return self

    return EventsRequest, ExplainRequest


class EventsResponse(BaseModel):
    """Body of a successful ``POST /v1/events``."""

    accepted: int = Field(description="New events, logged and folded into the model")
    duplicates: int = Field(description="Events whose event_id was already logged (no-op)")
    model_version: int
    pending: int = Field(0, description="Event groups logged and in the histories whose "
                                        "model-wide update is still being applied (0 once "
                                        "the served model is the exact update)")


class ContributionOut(BaseModel):
    """One history item's part in an explanation."""

    item: OutId
    weight: float
    title: str | None = None
    position: int | None = Field(
        None, description="Its position in the history (0 = oldest), for models that "
                          "read the history in order (absent otherwise)")
    extras: dict[str, float] | None = Field(
        None, description="Further per-item values of the model, e.g. text_similarity "
                          "(HybridRecommender); absent when there are none")


class ExplainResponse(BaseModel):
    """Body of ``POST /v1/explain``: :meth:`maasrec.explain.Explanation.to_dict`."""

    item: OutId
    score: float
    contributions: list[ContributionOut]
    method: str
    reason: str
    baseline: float | None = None
    user: OutId | None = None
    model: str
    n_history: int
    modalities: dict[str, float]
    note: str | None = None
    details: dict[str, Any] | None = Field(
        None, description="Model-specific extras (LMRanker with tokens: token "
                          "attributions under 'tokens'); absent when there are none")
