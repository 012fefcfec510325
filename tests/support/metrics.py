"""Reading Prometheus metrics in tests: the samples of an exposition, by name and labels."""

from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """The samples of a /metrics answer."""
    return samples_of(text_string_to_metric_families(text))


def samples_of(families: Iterable[Metric]) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in families
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels``; 0 if there is none (a series not yet used)."""
    return samples.get((name, frozenset(labels.items())), 0.0)
