"""The common contract every maasrec recommender keeps, as reusable checks.

Use it for your own models::

    from maasrec.testing import check_recommender
    check_recommender(lambda: MyModel(factors=8, random_state=0))

or, in pytest, one test per check::

    @pytest.mark.parametrize("name, check", list(iter_checks(MyModel)))
    def test_contract(name, check):
        check()

:func:`check_component` does the same for encoders, fusion modules and scorers
(shapes, dtype, determinism in eval mode, gradient flow, state-dict round trip, device
moves).

The recommender checks run on a tiny data set with string user ids and integer item ids that
differ from their indices, so index/id mix-ups show up.
"""

from .checks import CONTRACT_CHECKS, check_recommender, iter_checks, tiny_interactions


def __getattr__(name):  # component checks need torch: import them only when asked for
    if name in ("COMPONENT_CHECKS", "check_component", "iter_component_checks", "tiny_text_model"):
        from . import components

        return getattr(components, name)
    raise AttributeError(f"module 'maasrec.testing' has no attribute {name!r}")


__all__ = ["COMPONENT_CHECKS", "CONTRACT_CHECKS", "check_component", "check_recommender",
           "iter_checks", "iter_component_checks", "tiny_interactions", "tiny_text_model"]
