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
        # generation, per adapter (the base model's name for requests without a prompt)
        self.gen_requests: dict[tuple[str, str], int] = {}  # (adapter, finish reason) -> count
        self.gen_prompt_tokens: dict[str, int] = {}
        self.gen_completion_tokens: dict[str, int] = {}
        self.ttft: dict[str, Histogram] = {}
        self.itl: dict[str, Histogram] = {}
        self.gen_refused: dict[str, int] = {}  # reason (queue_full, shutting_down, context, ...) -> count
        self.adapter_loads = lambda: 0  # set by the app (the store counts)
        self.adapter_evictions = lambda: 0
        self.gen_running = lambda: 0  # set by the app
        self.gen_waiting = lambda: 0
        self.adapters_servable = lambda: 0
        self.adapter_memory = lambda: 0

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

    def observe_generation(self, adapter: str, reason: str, prompt_tokens: int, completion_tokens: int,
                           ttft_s: float | None, itl_s: list[float]) -> None:
        with self._lock:
            key = (adapter, reason)
            self.gen_requests[key] = self.gen_requests.get(key, 0) + 1
            self.gen_prompt_tokens[adapter] = self.gen_prompt_tokens.get(adapter, 0) + prompt_tokens
            self.gen_completion_tokens[adapter] = self.gen_completion_tokens.get(adapter, 0) + completion_tokens
            if ttft_s is not None:
                self.ttft.setdefault(adapter, Histogram(LATENCY_BUCKETS)).observe(ttft_s)
            if itl_s:
                hist = self.itl.setdefault(adapter, Histogram(LATENCY_BUCKETS))
                for value in itl_s:
                    hist.observe(value)

    def count_refused(self, reason: str) -> None:
        with self._lock:
            self.gen_refused[reason] = self.gen_refused.get(reason, 0) + 1

    def _generation_lines(self) -> list[str]:
        lines = ["# HELP softprompt_generation_requests_total Generation requests by adapter and finish reason "
                 "(stop, length, cancelled, error).",
                 "# TYPE softprompt_generation_requests_total counter"]
        for (adapter, reason), n in sorted(self.gen_requests.items()):
            lines.append(f"softprompt_generation_requests_total{_labels({'adapter': adapter, 'reason': reason})} {n}")
        lines += ["# HELP softprompt_generation_prompt_tokens_total Prompt tokens of generation requests, by adapter.",
                  "# TYPE softprompt_generation_prompt_tokens_total counter"]
        for adapter, n in sorted(self.gen_prompt_tokens.items()):
            lines.append(f"softprompt_generation_prompt_tokens_total{_labels({'adapter': adapter})} {n}")
        lines += ["# HELP softprompt_generation_completion_tokens_total Generated tokens, by adapter.",
                  "# TYPE softprompt_generation_completion_tokens_total counter"]
        for adapter, n in sorted(self.gen_completion_tokens.items()):
            lines.append(f"softprompt_generation_completion_tokens_total{_labels({'adapter': adapter})} {n}")
        lines += ["# HELP softprompt_time_to_first_token_seconds From submission to the first generated token, by adapter.",
                  "# TYPE softprompt_time_to_first_token_seconds histogram"]
        for adapter, hist in sorted(self.ttft.items()):
            lines += hist.lines("softprompt_time_to_first_token_seconds", {"adapter": adapter})
        lines += ["# HELP softprompt_inter_token_latency_seconds Time between consecutive generated tokens, by adapter.",
                  "# TYPE softprompt_inter_token_latency_seconds histogram"]
        for adapter, hist in sorted(self.itl.items()):
            lines += hist.lines("softprompt_inter_token_latency_seconds", {"adapter": adapter})
        lines += ["# HELP softprompt_generation_refused_total Generation requests refused before they ran, by reason.",
                  "# TYPE softprompt_generation_refused_total counter"]
        for reason, n in sorted(self.gen_refused.items()):
            lines.append(f"softprompt_generation_refused_total{_labels({'reason': reason})} {n}")
        lines += ["# HELP softprompt_adapter_loads_total Adapters read into memory (first use, reload after eviction, admin load).",
                  "# TYPE softprompt_adapter_loads_total counter", f"softprompt_adapter_loads_total {self.adapter_loads()}",
                  "# HELP softprompt_adapter_evictions_total Adapters dropped from memory by the LRU budget.",
                  "# TYPE softprompt_adapter_evictions_total counter",
                  f"softprompt_adapter_evictions_total {self.adapter_evictions()}"]
        return lines

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
            lines += self._generation_lines()
        lines += ["# HELP softprompt_queue_depth Requests waiting for a batch.", "# TYPE softprompt_queue_depth gauge",
                  f"softprompt_queue_depth {self.queue_depth()}",
                  "# HELP softprompt_adapters_loaded Adapters ready to serve.", "# TYPE softprompt_adapters_loaded gauge",
                  f"softprompt_adapters_loaded {self.adapters_loaded()}",
                  "# HELP softprompt_adapters_servable Adapters that can be served (in memory or loaded on first use).",
                  "# TYPE softprompt_adapters_servable gauge", f"softprompt_adapters_servable {self.adapters_servable()}",
                  "# HELP softprompt_adapter_memory_bytes Memory taken by the adapters in memory.",
                  "# TYPE softprompt_adapter_memory_bytes gauge", f"softprompt_adapter_memory_bytes {self.adapter_memory()}",
                  "# HELP softprompt_generation_running Requests in the running decode batch.",
                  "# TYPE softprompt_generation_running gauge", f"softprompt_generation_running {self.gen_running()}",
                  "# HELP softprompt_generation_waiting Generation requests waiting to join the decode batch.",
                  "# TYPE softprompt_generation_waiting gauge", f"softprompt_generation_waiting {self.gen_waiting()}"]
        return "\n".join(lines) + "\n"
