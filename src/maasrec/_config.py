"""``from_config``: rebuild a torch building block from its constructor arguments."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T", bound="FromConfig")


class FromConfig:
    """Mixin for modules whose ``get_config()`` returns exactly their constructor arguments.

    Encoders, fusion modules and scorers are rebuilt this way before ``load_state_dict``.
    """

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
