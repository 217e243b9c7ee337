"""Process-local counters and gauges, rendered in the Prometheus text format for ``GET /metrics``.

Deliberately tiny: a dict per metric, no client library, no background thread.

>>> registry = Registry()
>>> processed = registry.counter("salepulse_events_processed_total", "Events decoded and counted.", ["kind"])
>>> processed.inc(3, kind="order")
>>> print(registry.render().strip())
# HELP salepulse_events_processed_total Events decoded and counted.
# TYPE salepulse_events_processed_total counter
salepulse_events_processed_total{kind="order"} 3
"""

from __future__ import annotations

from collections.abc import Sequence


class Metric:
    def __init__(self, name: str, help_text: str, kind: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.kind, self.labels = name, help_text, kind, tuple(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        return tuple(str(labels.get(name, "")) for name in self.labels)

    def inc(self, amount: float = 1, **labels: str) -> None:
        key = self._key(labels)
        self.values[key] = self.values.get(key, 0) + amount

    def set(self, value: float, **labels: str) -> None:
        self.values[self._key(labels)] = value

    def get(self, **labels: str) -> float:
        return self.values.get(self._key(labels), 0)

    def total(self) -> float:
        return sum(self.values.values())

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        for key, value in sorted(self.values.items()):
            label_text = ",".join(f'{name}="{val}"' for name, val in zip(self.labels, key, strict=True))
            shown = int(value) if float(value).is_integer() else round(value, 6)
            lines.append(f"{self.name}{{{label_text}}} {shown}" if label_text else f"{self.name} {shown}")
        return lines


class Registry:
    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def counter(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Metric:
        return self.metrics.setdefault(name, Metric(name, help_text, "counter", labels))

    def gauge(self, name: str, help_text: str, labels: Sequence[str] = ()) -> Metric:
        return self.metrics.setdefault(name, Metric(name, help_text, "gauge", labels))

    def render(self) -> str:
        return "\n".join(line for metric in self.metrics.values() for line in metric.render()) + "\n"
