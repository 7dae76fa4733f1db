"""Tests of maasrec.exceptions: the hierarchy a scikit-learn user relies on."""

import pickle

import pytest

import maasrec
from maasrec.exceptions import (
    ColdStartWarning,
    DataError,
    DeviceError,
    MaasrecError,
    MaasrecWarning,
    ModelFormatError,
    NotFittedError,
    UnknownIdError,
)


@pytest.mark.parametrize(
    "cls, builtin",
    [
        (DataError, ValueError),
        (UnknownIdError, KeyError),
        (NotFittedError, ValueError),
        (NotFittedError, AttributeError),
        (DeviceError, RuntimeError),
        (ModelFormatError, ValueError),
    ],
)
def test_builtin_bases(cls, builtin):
    assert issubclass(cls, MaasrecError)
    assert issubclass(cls, builtin)


def test_every_error_is_a_maasrec_error():
    for cls in (DataError, UnknownIdError, NotFittedError, DeviceError, ModelFormatError):
        with pytest.raises(MaasrecError):
            raise cls("boom")


def test_warnings_are_user_warnings():
    assert issubclass(MaasrecWarning, UserWarning)
    assert issubclass(ColdStartWarning, MaasrecWarning)
    with pytest.warns(MaasrecWarning, match="cold"):
        import warnings

        warnings.warn("cold users", ColdStartWarning, stacklevel=1)


def test_unknown_id_error_keeps_ids_and_readable_message():
    err = UnknownIdError("unknown item id(s): 'x'", ids=["x", 3], kind="item")
    assert err.ids == ["x", 3]
    assert err.kind == "item"
    # KeyError.__str__ would add quotes around the message; this one is readable
    assert str(err) == "unknown item id(s): 'x'"
    assert UnknownIdError("m").ids == []
    assert UnknownIdError("m").kind is None


def test_unknown_id_error_caught_as_key_error():
    with pytest.raises(KeyError):
        raise UnknownIdError("nope", ids=[1])


def test_not_fitted_error_hasattr_semantics():
    class Thing:
        @property
        def fitted_(self):
            raise NotFittedError("not fitted")

    assert not hasattr(Thing(), "fitted_")


def test_exceptions_are_public():
    for name in (
        "DataError",
        "DeviceError",
        "MaasrecError",
        "ModelFormatError",
        "NotFittedError",
        "UnknownIdError",
        "MaasrecWarning",
        "ColdStartWarning",
    ):
        assert getattr(maasrec, name) is getattr(maasrec.exceptions, name)


def test_data_error_pickles():
    # exceptions cross process boundaries (multiprocessing, serving workers)
    err = pickle.loads(pickle.dumps(DataError("bad l2")))
    assert isinstance(err, DataError) and str(err) == "bad l2"
