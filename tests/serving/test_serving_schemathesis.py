"""Property-based API tests from the published OpenAPI schema, with ALL schemathesis checks.

Besides "no 5xx", the checks include ``positive_data_acceptance`` (a request valid for the
schema must not be refused with 400/422) and ``negative_data_rejection`` (an invalid one
must be refused): the schema states exactly what the server accepts.
"""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi", reason="serving needs the 'serve' extra")
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.checks import CHECKS, load_all_checks  # noqa: E402

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
# a schema-violating body can also be too large: the server refuses it with its documented
# 413 (max_body_bytes) before reading it, which is a rejection too
_negative = schema.config.checks.negative_data_rejection
_negative.expected_statuses = [*_negative.expected_statuses, "413"]
load_all_checks()
ALL_CHECKS = list(CHECKS.get_all())


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_all_schemathesis_checks(case):
    assert len(ALL_CHECKS) >= 14 and any(c.__name__ == "positive_data_acceptance"
                                         for c in ALL_CHECKS)
    case.call_and_validate(checks=ALL_CHECKS)
