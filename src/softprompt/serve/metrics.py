"""Prometheus metrics, hand-written (text exposition format 0.0.4); no global registry."""

from __future__ import annotations

import threading
from bisect import bisect_left

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _labels(pairs: dict[str, str]) -> str:
    if not pairs:
        return ""
    esc = {k: str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for k, v in pairs.items()}
    return "{" + ",".join(f'{k}="{v}"' for k, v in esc.items()) + "}"


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # last: +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: dict[str, str]) -> list[str]:
        out, running = [], 0
        for bound, n in zip((*self.buckets, float("inf")), self.counts):
            running += n
            le = "+Inf" if bound == float("inf") else repr(float(bound))
            out.append(f"{name}_bucket{_labels({**labels, 'le': le})} {running}")
        out.append(f"{name}_sum{_labels(labels)} {self.sum!r}")
        out.append(f"{name}_count{_labels(labels)} {self.count}")
        return out


class Metrics:
    """Counters, gauges and histograms the server exports at GET /metrics."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = {}  # (method, endpoint, status) -> count
        self.latency: dict[str, Histogram] = {}  # endpoint -> seconds
        self.batch_size = Histogram(BATCH_BUCKETS)
        self.batch_adapters = Histogram(BATCH_BUCKETS)
        self.forward_seconds = Histogram(LATENCY_BUCKETS)
        self.rejected_overload = 0
        self.batch_errors = 0
        self.queue_depth = lambda: 0  # set by the app
        self.adapters_loaded = lambda: 0

    def observe_request(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, endpoint, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_batch(self, size: int, adapters: int, seconds: float) -> None:
        with self._lock:
            self.batch_size.observe(size)
            self.batch_adapters.observe(adapters)
            self.forward_seconds.observe(seconds)

    def count_overload(self) -> None:
        with self._lock:
            self.rejected_overload += 1

    def count_batch_error(self) -> None:
        with self._lock:
            self.batch_errors += 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP softprompt_requests_total HTTP requests by method, endpoint and status code.",
                "# TYPE softprompt_requests_total counter",
            ]
            for (method, endpoint, status), n in sorted(self.requests.items()):
                lines.append(f"softprompt_requests_total{_labels({'method': method, 'endpoint': endpoint, 'status': str(status)})} {n}")
            lines += ["# HELP softprompt_request_latency_seconds Time from request to response, by endpoint.",
                      "# TYPE softprompt_request_latency_seconds histogram"]
            for endpoint, hist in sorted(self.latency.items()):
                lines += hist.lines("softprompt_request_latency_seconds", {"endpoint": endpoint})
            lines += ["# HELP softprompt_batch_size Requests per forward pass.", "# TYPE softprompt_batch_size histogram"]
            lines += self.batch_size.lines("softprompt_batch_size", {})
            lines += ["# HELP softprompt_batch_adapters Distinct adapters per forward pass.",
                      "# TYPE softprompt_batch_adapters histogram"]
            lines += self.batch_adapters.lines("softprompt_batch_adapters", {})
            lines += ["# HELP softprompt_forward_seconds Time of one batch through the model.",
                      "# TYPE softprompt_forward_seconds histogram"]
            lines += self.forward_seconds.lines("softprompt_forward_seconds", {})
            lines += ["# HELP softprompt_overload_rejections_total Requests refused with 503 because the queue was full.",
                      "# TYPE softprompt_overload_rejections_total counter",
                      f"softprompt_overload_rejections_total {self.rejected_overload}",
                      "# HELP softprompt_batch_errors_total Batches whose forward pass raised.",
                      "# TYPE softprompt_batch_errors_total counter",
                      f"softprompt_batch_errors_total {self.batch_errors}"]
        lines += ["# HELP softprompt_queue_depth Requests waiting for a batch.", "# TYPE softprompt_queue_depth gauge",
                  f"softprompt_queue_depth {self.queue_depth()}",
                  "# HELP softprompt_adapters_loaded Adapters ready to serve.", "# TYPE softprompt_adapters_loaded gauge",
                  f"softprompt_adapters_loaded {self.adapters_loaded()}"]
        return "\n".join(lines) + "\n"
