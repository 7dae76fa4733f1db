"""Prometheus metrics of one serving app (its own registry, never the global one).

Exposed at ``GET /metrics`` in the Prometheus text format:

==================================  =========  ===========================================
name                                type       labels / meaning
==================================  =========  ===========================================
maasrec_requests_total              counter    endpoint, method, status
maasrec_request_duration_seconds    histogram  endpoint: wall time of the whole request
maasrec_errors_total                counter    endpoint, error (UnknownIdError, DataError,
                                               AuthenticationError, InternalError, ...)
maasrec_inflight_requests           gauge      requests being handled now
maasrec_batch_size                  histogram  users per ``model.recommend`` call
maasrec_batch_requests              histogram  HTTP requests merged into one call
maasrec_model_call_seconds          histogram  endpoint: time inside the model
maasrec_model_version               gauge      counter of the served model (1, 2, ...)
maasrec_model_info                  gauge      1, labelled model_class, model_name
                                               (relative to the model root, never an
                                               absolute path), maasrec_version,
                                               model_version
maasrec_model_reloads_total         counter    result (ok, refused)
==================================  =========  ===========================================

With ``--workers N`` every worker process has its own registry: a scrape sees one worker.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["ServingMetrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class ServingMetrics:
    """The metrics of one app.

    Parameters
    ----------
    registry : prometheus_client.CollectorRegistry, optional
        Where to register; default a new registry (so several apps in one process, e.g.
        in tests, never collide).
    """

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter("maasrec_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "method", "status"], registry=r)
        self.latency = Histogram("maasrec_request_duration_seconds",
                                 "Request latency by endpoint", ["endpoint"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.errors = Counter("maasrec_errors", "Error responses by endpoint and error type",
                              ["endpoint", "error"], registry=r)
        self.inflight = Gauge("maasrec_inflight_requests", "Requests being handled",
                              registry=r)
        self.batch_size = Histogram("maasrec_batch_size", "Users per model.recommend call",
                                    buckets=_SIZE_BUCKETS, registry=r)
        self.batch_requests = Histogram("maasrec_batch_requests",
                                        "HTTP requests merged into one model call",
                                        buckets=_SIZE_BUCKETS, registry=r)
        self.model_seconds = Histogram("maasrec_model_call_seconds",
                                       "Time spent inside the model per call", ["endpoint"],
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.model_version = Gauge("maasrec_model_version", "Counter of the served model",
                                   registry=r)
        self.model_info = Gauge("maasrec_model_info", "The served model (value 1)",
                                ["model_class", "model_name", "maasrec_version",
                                 "model_version"], registry=r)
        self.reloads = Counter("maasrec_model_reloads", "Model reloads by result", ["result"],
                               registry=r)
        self._request_series: dict[tuple, tuple] = {}
        self.model_loaded = Gauge("maasrec_model_loaded_timestamp_seconds",
                                  "Unix time the served model was loaded (its age: time() "
                                  "minus this)", registry=r)

    def set_model(self, model_class: str, model_name: str | None, maasrec_version: str | None,
                  version: int) -> None:
        """Record the model now being served.

        Parameters
        ----------
        model_class, model_name, maasrec_version : str
        version : int
        """
        self.model_version.set(version)
        self.model_loaded.set_to_current_time()
        self.model_info.clear()
        self.model_info.labels(model_class=model_class, model_name=str(model_name or ""),
                               maasrec_version=str(maasrec_version or ""),
                               model_version=str(version)).set(1)

    def observe_request(self, endpoint: str, method: str, status: int,
                        seconds: float) -> None:
        """Count one HTTP request and observe its latency (the labelled series of each
        ``(endpoint, method, status)`` looked up once).

        Parameters
        ----------
        endpoint, method : str
        status : int
        seconds : float
        """
        key = (endpoint, method, status)
        series = self._request_series.get(key)
        if series is None:
            series = self._request_series[key] = (
                self.requests.labels(endpoint=endpoint, method=method, status=str(status)),
                self.latency.labels(endpoint=endpoint))
        series[0].inc()
        series[1].observe(seconds)

    def observe_batch(self, n_requests: int, n_users: int, seconds: float) -> None:
        """Record one merged ``model.recommend`` call.

        Parameters
        ----------
        n_requests : int
        n_users : int
        seconds : float
        """
        self.batch_requests.observe(n_requests)
        self.batch_size.observe(n_users)
        self.model_seconds.labels(endpoint="/v1/recommend").observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The metrics in the Prometheus text format.

        Returns
        -------
        body : bytes
        content_type : str
        """
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
