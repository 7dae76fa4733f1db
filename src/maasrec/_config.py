"""One configuration rule for maasrec's torch building blocks (encoders, fusion, scorers).

**The rule.** A building block's configuration *is* its constructor arguments, stored
on the instance under the same names -- the scikit-learn convention that
:class:`maasrec.base.Component` (and so every recommender) already follows. The
arguments are validated and normalised to plain JSON types in ``__init__`` (an int
stays an int, a tuple of sizes becomes a list, a mapping a dict) but never *resolved*:
an argument whose default ``None`` means "derive it" (``attention_dim=None`` -> ``dim``)
is stored as ``None`` and the derived value lives in a private attribute. Because of
this one rule:

- :meth:`FromConfig.get_config` is derived from the ``__init__`` signature once, here,
  and never written by hand;
- :meth:`FromConfig.from_config` is ``cls(**config)``: a saved configuration rebuilds
  the same architecture before ``load_state_dict``;
- blocks get :meth:`~maasrec.base.Component.get_params`,
  :meth:`~FromConfig.set_params`, :func:`maasrec.base.clone` and a ``repr`` showing
  the non-default arguments, like recommenders.

The one exception is a parameter whose name is also a torch parameter or submodule
kept under that name for state-dict compatibility (``item_bias=True`` builds the
``item_bias`` tensor): the block stores the argument under another attribute and names
it in ``_param_attrs`` (``{"item_bias": "use_item_bias"}``).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from torch import nn

from .base import Component
from .exceptions import DataError

__all__ = ["FromConfig"]

T = TypeVar("T", bound="FromConfig")


class FromConfig(Component):
    """Base of the torch building blocks: configuration = constructor arguments.

    Mix in before :class:`torch.nn.Module` (``class Block(FromConfig, nn.Module)``).
    See the module docstring for the rule every subclass keeps.
    """

    #: parameter name -> the attribute holding its argument, for the few parameters
    #: whose own name is taken by a torch parameter or submodule.
    _param_attrs: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def _config_names(cls) -> list[str]:
        """Constructor parameter names in signature order (the order of ``get_config``)."""
        names = set(cls._get_param_names())
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p in names]

    def _param_value(self, name: str) -> Any:
        return getattr(self, self._param_attrs.get(name, name))

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-compatible) to rebuild before ``load_state_dict``.

        Returns
        -------
        dict
            ``{name: argument}`` for every ``__init__`` parameter, in signature order;
            containers are copies.
        """
        return {name: copy.deepcopy(self._param_value(name)) for name in self._config_names()}

    @classmethod
    def from_config(cls: type[T], config: dict[str, Any]) -> T:
        """Rebuild from :meth:`get_config` (then ``load_state_dict``).

        Parameters
        ----------
        config : dict
            The constructor arguments, as returned by ``get_config()``.

        Returns
        -------
        object
            A new, untrained instance of this class.
        """
        return cls(**config)

    def set_params(self, **params) -> FromConfig:
        """Change constructor arguments: the block is rebuilt in place.

        A torch block's layers follow from its arguments, so this re-runs ``__init__``
        with the new configuration: the weights are re-initialised (from
        ``random_state``) on the CPU, exactly as ``type(self)(**config)`` would build
        them.

        Parameters
        ----------
        **params
            New argument values.

        Returns
        -------
        self

        Raises
        ------
        DataError
            For a name that is not a constructor argument.
        """
        valid = self._get_param_names()
        for key in params:
            if key not in valid:
                raise DataError(f"{key!r} is not a parameter of {type(self).__name__}; valid "
                                f"parameters: {valid}")
        config = {**self.get_config(), **params}
        type(self).__init__(self, **config)
        return self

    # torch's module tree repr, with the non-default arguments on each block's line
    __repr__ = nn.Module.__repr__

    def extra_repr(self) -> str:
        """The arguments that differ from their defaults (shown in the module repr)."""
        sig = inspect.signature(type(self).__init__)
        parts = []
        for name in self._config_names():
            value, default = self._param_value(name), sig.parameters[name].default
            try:
                same = value is default or bool(value == default)
            except Exception:  # arrays and the like
                same = False
            if not same:
                parts.append(f"{name}={value!r}")
        return ", ".join(parts)
