"""A small client for `softprompt serve` (httpx; does not import torch).

    from softprompt.serve.client import Client
    c = Client("http://127.0.0.1:8000", token=None)
    c.classify("sst2-pt", "a gripping film")  # {'adapter', 'label', 'score', 'scores', 'logits', 'truncated'}
    c.generate("qa-prompt", "Question: ...", max_new_tokens=16)  # decoder / T5 bases
    c.adapters(); c.health()
"""

from __future__ import annotations

from typing import Any

import httpx


class ServeError(Exception):
    """The server answered with an error status; `status`, `detail` and `retry_after` say which."""

    def __init__(self, status: int, detail: Any, retry_after: str | None = None):
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class Client:
    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0,
                 transport: httpx.BaseTransport | None = None):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)

    # -- endpoints --------------------------------------------------------------------------------
    def classify(self, adapter: str, text: str, text_pair: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"adapter": adapter, "text": text}
        if text_pair is not None:
            body["text_pair"] = text_pair
        return self._call("POST", "/v1/classify", json=body)

    def generate(self, adapter: str, text: str, max_new_tokens: int = 32) -> dict[str, Any]:
        return self._call("POST", "/v1/generate", json={"adapter": adapter, "text": text, "max_new_tokens": max_new_tokens})

    def adapters(self) -> dict[str, Any]:
        return self._call("GET", "/v1/adapters")

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/healthz")

    def load(self, name: str, path: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/adapters/{name}", json={"path": str(path)})

    def unload(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/adapters/{name}")

    def metrics(self) -> str:
        resp = self._http.get("/metrics")
        self._raise(resp)
        return resp.text

    # -- plumbing ---------------------------------------------------------------------------------
    def _call(self, method: str, path: str, **kwargs) -> Any:
        resp = self._http.request(method, path, **kwargs)
        self._raise(resp)
        return resp.json()

    @staticmethod
    def _raise(resp: httpx.Response) -> None:
        if resp.status_code < 400:
            return
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        raise ServeError(resp.status_code, detail, resp.headers.get("retry-after"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
