"""The common contract every maasrec recommender keeps, as reusable checks.

Use it for your own models::

    from maasrec.testing import check_recommender
    check_recommender(lambda: MyModel(factors=8, random_state=0))

or, in pytest, one test per check::

    @pytest.mark.parametrize("name, check", list(iter_checks(MyModel)))
    def test_contract(name, check):
        check()

The checks run on a tiny data set with string user ids and integer item ids that
differ from their indices, so index/id mix-ups show up.
"""

from .checks import CONTRACT_CHECKS, check_recommender, iter_checks, tiny_interactions

__all__ = ["CONTRACT_CHECKS", "check_recommender", "iter_checks", "tiny_interactions"]
