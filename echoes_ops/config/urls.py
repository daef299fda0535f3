"""Secrets and URLs: a password that refuses to be printed, URLs shown only redacted, the
options of REDIS_URL this tool reads or refuses before redis-py sees it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from echoes_ops.config.values import as_bool
from echoes_ops.errors import ConfigError

REDACTED = "***"


class Secret:
    """A string that refuses to be printed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__


@dataclass(frozen=True)
class UrlParts:
    """A URL split by hand around its credentials.

    Passwords often hold characters that end a URL's authority (``#``, ``?``, ``/``) when
    they were not percent-encoded; ``urllib`` then puts part of the secret in the path or
    fragment. Splitting at the last ``@`` before anything else keeps the secret whole.
    """

    scheme: str
    username: str | None
    password: str | None
    rest: str  # everything after the credentials: host, port, path, query
    query_password: str | None

    @classmethod
    def parse(cls, url: str) -> UrlParts:
        scheme, sep, remainder = url.partition("://")
        if not sep:
            return cls("", None, None, url, None)
        userinfo, at, rest = remainder.rpartition("@")
        username = password = None
        if at:
            user, colon, secret = userinfo.partition(":")
            username = unquote(user) or None
            password = unquote(secret) if colon else None
        else:
            rest = remainder
        query_password = None
        base, qmark, query = rest.partition("?")
        if qmark:
            kept = []
            for pair in query.split("&"):
                name, _, value = pair.partition("=")
                if name == "password":
                    query_password = unquote(value)
                else:
                    kept.append(pair)
            rest = base + ("?" + "&".join(kept) if kept else "")
        return cls(scheme, username, password, rest, query_password)

    @property
    def secret(self) -> str | None:
        return self.password or self.query_password

    def without_credentials(self) -> str:
        return f"{self.scheme}://{self.rest}" if self.scheme else self.rest

    def redacted(self) -> str:
        if not self.scheme:
            return self.rest
        user = quote(self.username, safe="") if self.username else ""
        shown = f"{user}:{REDACTED}" if self.password is not None else user
        rest = self.rest
        if self.query_password is not None:
            rest += ("&" if "?" in rest else "?") + f"password={REDACTED}"
        return f"{self.scheme}://{shown}@{rest}" if shown else f"{self.scheme}://{rest}"


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (user names are kept)."""
    return UrlParts.parse(url).redacted()


def url_has_password(url: str) -> bool:
    return bool(UrlParts.parse(url).secret)


# URL query options that turn certificate checks off (redis-py's names and values)
_INSECURE_OPTIONS = {"ssl_cert_reqs": {"none", "optional", "cert_none", "cert_optional"}}
_OFF = {"false", "0", "no", "off"}


def check_url_options(url: str, *, insecure: bool) -> None:
    """A port that is not a number is bad input here, not a crash in the client; an option
    that turns TLS certificate checks off is refused unless --insecure was given."""
    rest = UrlParts.parse(url).without_credentials()
    try:
        urlsplit(rest).port  # noqa: B018 - parsing is the check
    except ValueError:
        raise ConfigError(
            f"REDIS_URL has a port that is not a number between 0 and 65535: {redact_url(url)!r}"
        ) from None
    query = urlsplit(rest).query
    for pair in query.split("&") if query else []:
        name, _, value = pair.partition("=")
        value = unquote(value).strip().lower()
        weak = value in _INSECURE_OPTIONS.get(name, set()) or (
            name == "ssl_check_hostname" and value in _OFF
        )
        if weak and not insecure:
            raise ConfigError(
                f"REDIS_URL option {name}={value} turns TLS certificate checks off; refused",
                hint="remove it, or give --insecure (REDIS_TLS_INSECURE=1) to accept an "
                "unverified server knowingly",
            )


_CLUSTER_OPTION = "cluster"


def pop_cluster_option(url: str) -> tuple[str, bool | None]:
    """``url`` without its ``cluster=`` query option (redis-py would refuse it), and that
    option's value (None when absent)."""
    base, qmark, query = url.partition("?")
    if not qmark:
        return url, None
    kept: list[str] = []
    found: bool | None = None
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == _CLUSTER_OPTION:
            found = as_bool("REDIS_URL option cluster", unquote(value))
        else:
            kept.append(pair)
    if found is None:
        return url, None
    return base + ("?" + "&".join(kept) if kept else ""), found


def build_redis_url(host: str, port: int, db: int = 0, password: str | None = None) -> str:
    """A redis:// URL; used by local services to print what to export."""
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{db}"
