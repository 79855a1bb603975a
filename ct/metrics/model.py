"""Metric definitions read from live snapshot dicts: one table feeds Prometheus and StatsD.

Nothing here counts anything. A *source* is a callable returning a plain dict (for example
``Edge.snapshot``); a list of :class:`MetricDef` rows says which keys of that dict are
published, under which name, type and labels. Exporters call :meth:`MetricSet.read` at
scrape or push time, so the numbers are always the live ones (no double bookkeeping).

Pure logic: no sockets, no reactor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

from twisted.logger import Logger

_log = Logger()

GAUGE = "gauge"
COUNTER = "counter"
INFO = "info"  # a gauge of value 1 whose labels carry text (version, region...)

DEFAULT_NAMESPACE = "codetogether"

_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_STATSD_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


@dataclass(frozen=True)
class MetricDef:
    """One published metric.

    ``key`` is the snapshot key holding the number. When ``label`` is set, either ``key`` is a
    mapping ``{label value: snapshot key}`` (several keys, one labelled metric), or the
    snapshot value at ``key`` is itself a dict ``{label value: number}``. ``scale`` converts
    units (``0.001`` turns milliseconds into seconds). ``INFO`` rows take their label values
    from the snapshot keys listed in ``info_keys``. ``statsd`` overrides the StatsD name
    (default: the name without ``_total``).
    """

    name: str
    kind: str
    help: str
    key: str | Mapping[str, str] | None = None
    label: str | None = None
    scale: float = 1.0
    statsd: str | None = None
    info_keys: tuple[str, ...] = ()

    def __post_init__(self):
        if not _NAME.match(self.name):
            raise ValueError(f"bad metric name {self.name!r}")
        if self.kind not in (GAUGE, COUNTER, INFO):
            raise ValueError(f"bad metric kind {self.kind!r}")
        if (self.kind == COUNTER) != self.name.endswith("_total"):
            raise ValueError(f"{self.name}: counters, and only counters, end in _total")
        if isinstance(self.key, Mapping) and not self.label:
            raise ValueError(f"{self.name}: a key mapping needs a label name")

    @property
    def statsd_name(self) -> str:
        if self.statsd:
            return self.statsd
        return self.name[:-len("_total")] if self.name.endswith("_total") else self.name


@dataclass(frozen=True)
class Family:
    """The current values of one metric: ``samples`` pairs label values with numbers."""

    definition: MetricDef
    name: str  # with namespace, e.g. codetogether_sessions_active
    samples: tuple[tuple[tuple[str, ...], float], ...]
    label_names: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return self.definition.kind


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, (int, float)):
        return None
    return value


def evaluate(definitions: Iterable[MetricDef], snapshot: Mapping[str, Any],
             namespace: str = DEFAULT_NAMESPACE) -> list[Family]:
    """Families for the ``definitions`` whose keys are present in ``snapshot``.

    Missing keys are skipped, so a source may publish only what it currently has.
    """
    families = []
    for d in definitions:
        name = f"{namespace}_{d.name}" if namespace else d.name
        samples: list[tuple[tuple[str, ...], float]] = []
        labels: tuple[str, ...] = (d.label,) if d.label else ()
        if d.kind == INFO:
            if not all(k in snapshot for k in d.info_keys):
                continue
            labels = d.info_keys
            samples.append((tuple(str(snapshot[k]) for k in d.info_keys), 1))
        elif isinstance(d.key, Mapping):
            for label_value, key in d.key.items():
                value = _number(snapshot.get(key))
                if value is not None:
                    samples.append(((label_value,), value * d.scale))
        elif d.label:
            by_label = snapshot.get(d.key)
            if not isinstance(by_label, Mapping):
                continue
            for label_value in sorted(by_label):
                value = _number(by_label[label_value])
                if value is not None:
                    samples.append(((str(label_value),), value * d.scale))
        else:
            value = _number(snapshot.get(d.key))
            if value is None:
                continue
            samples.append(((), value * d.scale))
        if samples or d.label:
            families.append(Family(d, name, tuple(samples), labels))
    return families


@dataclass
class _Source:
    name: str
    read: Callable[[], Mapping[str, Any]]
    definitions: Sequence[MetricDef]
    failing: bool = False


class MetricSet:
    """The metric sources of one service (edge, locator): what exporters and dashboards read.

    Plug a component in with :meth:`add_source`; its callable runs at every scrape and push.
    """

    def __init__(self, namespace: str = DEFAULT_NAMESPACE):
        self.namespace = namespace
        self._sources: dict[str, _Source] = {}

    def add_source(self, name: str, read: Callable[[], Mapping[str, Any]],
                   definitions: Sequence[MetricDef]) -> None:
        """Publish ``definitions`` read from ``read()``; replaces a source of the same name."""
        self._sources[name] = _Source(name, read, tuple(definitions))

    def remove_source(self, name: str) -> None:
        self._sources.pop(name, None)

    def source_names(self) -> list[str]:
        return list(self._sources)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every source's current dict, by source name (a failing source is left out)."""
        out = {}
        for source in list(self._sources.values()):
            values = self._read(source)
            if values is not None:
                out[source.name] = dict(values)
        return out

    def read(self) -> list[Family]:
        """Current values of every published metric."""
        families: list[Family] = []
        seen: set[str] = set()
        for source in list(self._sources.values()):
            values = self._read(source)
            if values is None:
                continue
            for family in evaluate(source.definitions, values, self.namespace):
                if family.name in seen:
                    continue  # two sources defining one name: the first one wins
                seen.add(family.name)
                families.append(family)
        return families

    def _read(self, source: _Source) -> Mapping[str, Any] | None:
        try:
            values = source.read()
        except Exception:
            if not source.failing:
                _log.failure("metrics source {source} failed; its metrics are left out until "
                             "it works again", source=source.name)
            source.failing = True
            return None
        if source.failing:
            _log.info("metrics source {source} works again", source=source.name)
            source.failing = False
        return values


def statsd_safe(text: str) -> str:
    """A label value usable as one segment of a dotted StatsD name."""
    return _STATSD_UNSAFE.sub("_", text) or "_"
