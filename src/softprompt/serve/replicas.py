"""Serving replicas on Ray Serve: N copies of the server behind one endpoint, with adapter affinity.

    build_application(settings)  the Serve application: a Router ingress in front of settings.replicas Replicas
    serve_replicas(settings)     start it on settings.host:port (a local Ray runtime, or the cluster named by
                                 RAY_ADDRESS) and block until SIGINT / SIGTERM, then shut Serve down

A Replica runs today's app (create_app with its own backbone, AdapterStore and generation engine) under
uvicorn on a free loopback port inside the replica's process, and forwards the requests it is given to it;
every answer carries the header `x-softprompt-replica` (the Ray Serve replica id). The Router reads the
adapter name from the JSON body (`model` on the OpenAI routes, `adapter` on classify / generate) and calls
the replicas with `multiplexed_model_id=name`: Ray Serve's model multiplexing sends an adapter's requests
to the replica that has it loaded and a new adapter to a replica with the fewest; requests without an
adapter (the base model, listings, health) go to any replica. Adapters are still read lazily, per replica,
by that replica's store. Streamed answers (SSE) pass through as they come. Affinity is Ray's: a replica
reports its new routing keys every 0.1 s, so the first requests for a new adapter sent within that window
may land on two replicas (both then serve it), and a replica at max_ongoing_requests sheds to another.

A replica that dies loses only its in-flight requests: their clients get 503 (OpenAI error body), or in
a stream already started an SSE error event, and Ray Serve starts a replacement. Adapters are managed
through the prompts folder (each replica finds a new folder on its first request for it): the admin API
that loads or unloads an adapter in one process (POST / DELETE /v1/adapters/{name}) answers 501 here.
"""

# no `from __future__ import annotations`: serve.ingress needs the real Request annotation of Router.forward

import dataclasses
import json
import logging
import signal
import socket
import threading
import time

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve

from softprompt.serve.config import ServeSettings
from softprompt.serve.errors import error_body, is_openai_path

log = logging.getLogger("softprompt.serve")

REPLICA_HEADER = "x-softprompt-replica"
ADAPTERS_PER_REPLICA = 100_000  # Ray's per-replica routing keys; the memory budget is the store's (adapter_memory_mb)
# not forwarded (either way): per-connection headers, and accept-encoding so that answers pass through unencoded
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "date", "server",
               "accept-encoding"}
START_TIMEOUT_S = 300.0


def load_app(settings: ServeSettings, preload: bool = True):
    """Today's single-process app: the base, every adapter folder under settings.prompts (their tensors read
    now with `preload`, else on first use), create_app."""
    import torch

    from softprompt.backbones import load_backbone
    from softprompt.serve.app import create_app
    from softprompt.serve.store import AdapterStore

    if settings.threads:
        torch.set_num_threads(settings.threads)
    backbone = load_backbone(settings.base, device=settings.device)
    store = AdapterStore(backbone, settings.max_length, settings.adapter_memory_bytes)
    if settings.prompts:
        store.load_dir(settings.prompts, preload=preload)
    return create_app(settings, store)


def start_loopback_server(app, graceful_timeout: float):
    """uvicorn serving `app` on a free 127.0.0.1 port in a daemon thread: (server, thread, url), once started."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=graceful_timeout)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="softprompt-replica", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the replica's server did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def forwarded(headers) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers.items() if k.lower() not in HOP_HEADERS]


@serve.deployment
class Replica:
    """One server process (today's app behind a loopback uvicorn), called by the Router."""

    def __init__(self, settings: ServeSettings):
        self.replica_id = serve.get_replica_context().replica_id.unique_id
        app = load_app(settings, preload=False)  # each replica reads only the adapters routed to it
        self.base_name_ = app.state.context.backbone.name
        self.server, self.thread, url = start_loopback_server(app, settings.graceful_timeout)
        self.client = httpx.AsyncClient(base_url=url, timeout=None)

    @serve.multiplexed(max_num_models_per_replica=ADAPTERS_PER_REPLICA)
    async def route_key(self, name: str) -> str:
        """Marks `name` as served here (Ray routes its next requests to this replica); the store reads
        the adapter itself on its first request."""
        return name

    async def mark_adapter(self) -> None:
        name = serve.get_multiplexed_model_id()
        if name:
            await self.route_key(name)

    def base_name(self) -> str:
        return self.base_name_

    async def handle(self, method: str, path: str, headers: list, body: bytes) -> tuple[int, list, bytes]:
        await self.mark_adapter()
        answer = await self.client.request(method, path, headers=headers, content=body)
        return answer.status_code, forwarded(answer.headers) + [(REPLICA_HEADER, self.replica_id)], answer.content

    async def stream(self, method: str, path: str, headers: list, body: bytes):
        """Yields (status, headers) first, then the body's chunks as the app sends them."""
        await self.mark_adapter()
        async with self.client.stream(method, path, headers=headers, content=body) as answer:
            yield answer.status_code, forwarded(answer.headers) + [(REPLICA_HEADER, self.replica_id)]
            async for chunk in answer.aiter_raw():
                yield chunk

    def check_health(self) -> None:
        if not self.thread.is_alive():
            raise RuntimeError("the replica's server thread has stopped")

    def __del__(self) -> None:
        server = getattr(self, "server", None)
        if server is not None:
            server.should_exit = True
            self.thread.join(timeout=30)


def route_of(body: bytes) -> tuple[str | None, bool]:
    """(the adapter or model named by a JSON body, whether it asks for a stream)."""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        return None, False
    if not isinstance(data, dict):
        return None, False
    name = data.get("model", data.get("adapter"))
    return (name if isinstance(name, str) and name else None), data.get("stream") is True


def failure(path: str, status: int, message: str, code: str) -> JSONResponse:
    body = error_body(message, "server_error", code=code) if is_openai_path(path) else {"detail": message}
    return JSONResponse(body, status_code=status, headers={"Retry-After": "1"} if status == 503 else None)


ingress = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # /docs and /openapi.json come from a replica
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@serve.deployment
@serve.ingress(ingress)
class Router:
    """The one endpoint: forwards each request to a Replica, keyed by its adapter."""

    def __init__(self, replicas):
        self.replicas = replicas
        self.base: str | None = None

    async def route_key(self, name: str | None) -> str:
        if name and self.base is None:
            self.base = await self.replicas.base_name.remote()
        return "" if name in (None, self.base) else name

    @ingress.api_route("/{path:path}", methods=METHODS)
    async def forward(self, request: Request, path: str) -> Response:
        url_path = request.url.path
        if url_path.startswith("/v1/adapters/") and request.method in ("POST", "DELETE"):
            return failure(url_path, 501, "with --replicas > 1 adapters are managed through the prompts folder: "
                           "add an adapter folder there (each replica finds it on its first request for it)",
                           "not_supported")
        body = await request.body()
        name, streaming = route_of(body)
        handle = self.replicas.options(multiplexed_model_id=await self.route_key(name))
        target = url_path + (f"?{request.url.query}" if request.url.query else "")
        args = (request.method, target, forwarded(request.headers), body)
        if streaming:
            return await self.forward_stream(handle, url_path, args)
        try:
            status, headers, content = await handle.handle.remote(*args)
        except Exception as err:  # the replica died (or was replaced) while running it
            log.warning("request to %s failed on its replica: %s", url_path, type(err).__name__)
            return failure(url_path, 503, f"the replica serving this request failed ({type(err).__name__}); "
                           "retry", "replica_failed")
        return Response(content, status_code=status, headers=dict(headers))

    async def forward_stream(self, handle, url_path: str, args) -> Response:
        chunks = handle.options(stream=True).stream.remote(*args)
        try:
            status, headers = await chunks.__anext__()
        except Exception as err:
            return failure(url_path, 503, f"the replica serving this request failed ({type(err).__name__}); retry",
                           "replica_failed")

        async def relay():
            try:
                async for chunk in chunks:
                    yield chunk
            except Exception as err:  # the replica died mid-stream: end with an error event the client sees
                message = f"the replica serving this stream failed ({type(err).__name__})"
                yield f"data: {json.dumps(error_body(message, 'server_error', code='replica_failed'))}\n\n".encode()

        return StreamingResponse(relay(), status_code=status, headers=dict(headers))


def build_application(settings: ServeSettings):
    """The Serve application: Router -> settings.replicas Replicas (CPU threads and GPUs as the settings say)."""
    in_flight = settings.max_queue + settings.max_batch  # each replica's own queues answer 503 beyond this
    gpus = 1 if (settings.device or "").startswith("cuda") else 0
    actor = {"num_cpus": settings.threads or 1, "num_gpus": gpus}
    if settings.token():  # the replicas check the token themselves (on a cluster they do not share our environment)
        actor["runtime_env"] = {"env_vars": {settings.token_env: settings.token()}}
    replicas = Replica.options(
        num_replicas=settings.replicas, max_ongoing_requests=in_flight,
        graceful_shutdown_timeout_s=settings.graceful_timeout, ray_actor_options=actor,
    ).bind(dataclasses.replace(settings, replicas=1))
    return Router.options(max_ongoing_requests=in_flight * settings.replicas,
                          ray_actor_options={"num_cpus": 0}).bind(replicas)


def serve_replicas(settings: ServeSettings) -> None:
    """Start Ray Serve with the replicas on settings.host:port; block until SIGINT / SIGTERM."""
    import ray

    ray.init(ignore_reinit_error=True)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    serve.run(build_application(settings), name="softprompt", route_prefix="/")
    log.info("serving on http://%s:%d with %d replicas (Ray Serve)", settings.host, settings.port, settings.replicas)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass
    log.info("shutting the replicas down (in-flight requests get %.0f s)", settings.graceful_timeout)
    serve.shutdown()
    ray.shutdown()
