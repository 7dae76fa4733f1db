"""Property-based API tests from the published OpenAPI schema: no input gives a 5xx."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra")
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from maasrec.serving import create_app  # noqa: E402


def _schema():
    # schemathesis needs the schema at collection time: serve a tiny in-memory model whose
    # ids are the small integers 0..99, so that generated ids often exist (200 answers)
    # as well as not (404).
    import numpy as np
    import pandas as pd

    from maasrec.models import EASE

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"user": np.repeat(np.arange(100), 5), "item": rng.integers(0, 100, 500)})
    app = create_app(EASE(l2=1.0).fit(df), max_k=50, max_users=20, max_pairs=200)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = _schema()


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=50, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error])
