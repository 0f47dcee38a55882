"""Building each shard's Manager from its spec: a URL, a mapping, or a ready Manager."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

from .._errors import ConfigurationError
from .._manager import Manager
from .._url import parse_url

__all__ = ["ShardSpec", "build_manager"]

ShardSpec = Union[str, Mapping[str, Any], Manager]  # noqa: UP007 (runtime alias on 3.10)


def _with_node_name(url: str, name: str) -> str:
    """``url`` with ``?name=`` set, unless it names its node itself."""
    if "name" in parse_url(url).node_options:
        return url
    return f"{url}{'&' if '?' in url else '?'}name={name}"


def _split(shard: str, spec: Any) -> tuple[Any, Any, dict[str, Any]]:
    if isinstance(spec, str):
        return spec, (), {}
    if isinstance(spec, Mapping):
        extra = dict(spec)
        return extra.pop("primary", None), extra.pop("replicas", ()), extra
    raise ConfigurationError(
        f"shard {shard!r}: expected a URL, {{'primary': url, 'replicas': [...]}} or a Manager,"
        f" got {type(spec).__name__}"
    )


def build_manager(shard: str, spec: ShardSpec, options: Mapping[str, Any]) -> Manager:
    """The Manager of ``shard``; node names carry the shard unless the URLs name them."""
    if isinstance(spec, Manager):
        return spec
    primary, replicas, extra = _split(shard, spec)
    try:
        if not isinstance(primary, str):
            raise ConfigurationError("the 'primary' URL is missing")
        if isinstance(replicas, str):
            raise ConfigurationError("'replicas' must be a list of URLs (or a {name: url} mapping)")
        # Node names carry the shard ("s1.primary", "s1.replica-1") so logs, stats and errors
        # say which shard a node belongs to; names given explicitly are kept as they are.
        if isinstance(replicas, Mapping):
            named: dict[str, str] = dict(replicas)
        else:
            named = {}
            for i, url in enumerate(replicas, start=1):
                named[parse_url(url).node_options.get("name") or f"{shard}.replica-{i}"] = url
        return Manager(_with_node_name(primary, f"{shard}.primary"), named, **{**options, **extra})
    except ConfigurationError as exc:
        raise ConfigurationError(f"shard {shard!r}: {exc}") from None
