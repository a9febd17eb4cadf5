"""A small Prometheus registry: request counts, latency histogram, batch sizes, queue depth."""

from __future__ import annotations

from collections import defaultdict

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Histogram:
    """Cumulative-bucket histogram in the Prometheus text format."""

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.buckets = name, help_text, buckets
        self.counts = [0] * len(buckets)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.total += value
        self.count += 1
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        lines += [
            f'{self.name}_bucket{{le="{b}"}} {c}' for b, c in zip(self.buckets, self.counts, strict=True)
        ]
        lines += [
            f'{self.name}_bucket{{le="+Inf"}} {self.count}',
            f"{self.name}_sum {self.total}",
            f"{self.name}_count {self.count}",
        ]
        return lines


class Metrics:
    """What /metrics shows."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.latency = Histogram("impacts_request_seconds", "Request latency.", LATENCY_BUCKETS_S)
        self.batch = Histogram("impacts_batch_windows", "Windows per model call.", BATCH_BUCKETS)

    def render(self, queue_depth: int) -> str:
        lines = [
            "# HELP impacts_requests_total Requests by route and status.",
            "# TYPE impacts_requests_total counter",
        ]
        lines += [
            f'impacts_requests_total{{method="{m}",route="{r}",status="{s}"}} {n}'
            for (m, r, s), n in sorted(self.requests.items())
        ]
        lines += self.latency.render() + self.batch.render()
        lines += [
            "# HELP impacts_queue_windows Windows waiting for the model.",
            "# TYPE impacts_queue_windows gauge",
            f"impacts_queue_windows {queue_depth}",
        ]
        return "\n".join(lines) + "\n"
