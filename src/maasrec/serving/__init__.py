"""Recommendation as a service: an HTTP API over a saved maasrec model.

Needs the ``serve`` extra (``pip install 'maasrec[serve]'``: FastAPI, uvicorn,
prometheus-client, pydantic). The command line is ``maasrec serve MODEL_DIR``; in Python:

>>> from maasrec.serving import create_app          # any ASGI server can run the app
>>> app = create_app("models/ease", api_keys=["..."])  # doctest: +SKIP

The Python client (:class:`maasrec.client.Client`) needs only the standard library.

Modules: :mod:`~maasrec.serving.app` (endpoints), :mod:`~maasrec.serving.schemas`
(request/response bodies), :mod:`~maasrec.serving.batcher` (micro-batching),
:mod:`~maasrec.serving.auth` (API keys), :mod:`~maasrec.serving.metrics` (Prometheus),
:mod:`~maasrec.serving.state` (hot reload), :mod:`~maasrec.serving.server` (uvicorn).
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import prometheus_client  # noqa: F401
    import pydantic  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"maasrec.serving needs the 'serve' extra: pip install 'maasrec[serve]' "
        f"(missing: {exc.name})"
    ) from exc

from .app import ServingRuntime, create_app
from .auth import KeyChecker, load_keys
from .batcher import MicroBatcher
from .state import ModelHolder, ModelState

__all__ = ["KeyChecker", "MicroBatcher", "ModelHolder", "ModelState", "ServingRuntime",
           "create_app", "load_keys", "run_server"]


def run_server(*args, **kwargs) -> int:
    """Run the server with uvicorn (see :func:`maasrec.serving.server.run_server`)."""
    from .server import run_server as _run

    return _run(*args, **kwargs)
