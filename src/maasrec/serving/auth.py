"""API keys: where they come from and how a request's key is checked.

Keys come from an environment variable (comma-separated) and/or a key file (one key per
line; blank lines and lines starting with ``#`` are ignored). A request presents its key
as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

The check hashes the presented key and compares it with the hash of **every** configured
key using :func:`hmac.compare_digest`, without stopping at the first match, so neither the
content nor the position of a key leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..exceptions import MaasrecError

__all__ = ["ADMIN_KEYS_ENV", "API_KEYS_ENV", "KeyChecker", "is_loopback", "load_keys"]

API_KEYS_ENV = "MAASREC_API_KEYS"
ADMIN_KEYS_ENV = "MAASREC_ADMIN_KEYS"

#: Shortest key accepted from configuration (short keys are guessable).
MIN_KEY_LENGTH = 8

#: A shell command printing a good random key (named in the error for a bad key).
MAKE_KEY_COMMAND = 'python -c "import secrets; print(secrets.token_urlsafe(24))"'


def load_keys(env_var: str | None = None, key_file: str | os.PathLike | None = None) -> list[str]:
    """Read API keys from an environment variable and/or a key file.

    Parameters
    ----------
    env_var : str, optional
        Name of an environment variable holding comma-separated keys.
    key_file : path, optional
        A file with one key per line (``#`` comments and blank lines ignored).

    Returns
    -------
    list of str
        The distinct keys, in order of appearance.

    Raises
    ------
    MaasrecError
        If the key file cannot be read, or a key is shorter than 8 characters or
        contains whitespace (the message says the rule and how to make a key, and
        never shows the key).
    """
    found: list[tuple[str, str]] = []  # (key, where it came from)
    if env_var:
        found += [(k.strip(), f"${env_var}") for k in os.environ.get(env_var, "").split(",")
                  if k.strip()]
    if key_file is not None:
        try:
            text = Path(key_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise MaasrecError(f"cannot read the key file {str(key_file)!r}: {exc}") from exc
        found += [(line.strip(), repr(str(key_file))) for line in text.splitlines()
                  if line.strip() and not line.strip().startswith("#")]
    for n, (k, where) in enumerate(found, 1):
        problems = []
        if len(k) < MIN_KEY_LENGTH:
            problems.append(f"has only {len(k)} characters")
        if any(c.isspace() for c in k):
            problems.append("contains whitespace")
        if problems:  # never echo the key itself
            raise MaasrecError(
                f"API key #{n} in {where} {' and '.join(problems)}: a key needs at least "
                f"{MIN_KEY_LENGTH} characters and no whitespace (short keys are guessable). "
                f"Make one with: {MAKE_KEY_COMMAND}")
    keys = [k for k, _ in found]
    return list(dict.fromkeys(keys))


def _digest(key: str | bytes) -> bytes:
    if isinstance(key, str):
        key = key.encode("utf-8", "surrogateescape")
    return hashlib.sha256(key).digest()


def _any_match(candidate: bytes, digests: Iterable[bytes]) -> bool:
    found = False
    for d in digests:  # no early exit: the time does not depend on which key matches
        found |= hmac.compare_digest(candidate, d)
    return found


class KeyChecker:
    """Decides whether a request's key is a valid API key or admin key.

    Parameters
    ----------
    api_keys : iterable of str, optional
        Keys for the prediction endpoints.
    admin_keys : iterable of str, optional
        Keys for ``/v1/admin/*``; an admin key is also a valid API key.

    Notes
    -----
    With no key at all, :attr:`enabled` is False and every request is allowed (the
    server then binds to the loopback interface only, see :func:`is_loopback`). With API
    keys but no admin key, the admin endpoints are refused (403) for everyone; a reload
    is then possible only with SIGHUP.
    """

    def __init__(self, api_keys: Iterable[str] | None = None,
                 admin_keys: Iterable[str] | None = None):
        self._admin = [_digest(k) for k in (admin_keys or [])]
        self._api = [_digest(k) for k in (api_keys or [])] + self._admin

    @property
    def enabled(self) -> bool:
        """bool: whether any key is configured (authentication required)."""
        return bool(self._api)

    @property
    def has_admin(self) -> bool:
        """bool: whether an admin key is configured."""
        return bool(self._admin)

    @staticmethod
    def presented_keys(headers: Mapping[str, str]) -> list[bytes]:
        """Keys sent with a request (``Authorization: Bearer`` and ``X-API-Key``).

        Parameters
        ----------
        headers : mapping of lower-case header name to value

        Returns
        -------
        list of bytes
        """
        out = []
        auth = headers.get("authorization")
        if auth:
            scheme, _, value = auth.strip().partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                out.append(value.strip().encode("latin-1", "replace"))
        key = headers.get("x-api-key")
        if key and key.strip():
            out.append(key.strip().encode("latin-1", "replace"))
        return out

    def role(self, headers: Mapping[str, str]) -> str | None:
        """The role a request's key grants.

        Parameters
        ----------
        headers : mapping of lower-case header name to value

        Returns
        -------
        {"admin", "user"} or None
            ``None`` when no valid key was presented (and keys are required);
            ``"admin"`` for every request when no key is configured at all.
        """
        if not self.enabled:
            return "admin"
        role = None
        for key in self.presented_keys(headers):
            d = _digest(key)
            if _any_match(d, self._admin):
                role = "admin"
            elif role is None and _any_match(d, self._api):
                role = "user"
        return role


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``.

    Parameters
    ----------
    host : str

    Returns
    -------
    bool
    """
    h = host.strip().strip("[]").lower()
    if h in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False
