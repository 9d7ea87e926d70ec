"""A small client for `softprompt serve` (httpx; does not import torch).

    from softprompt.serve.client import Client
    c = Client("http://127.0.0.1:8000", token=None)
    c.classify("sst2-pt", "a gripping film")  # {'adapter', 'label', 'score', 'scores', 'logits', 'truncated'}
    c.generate("qa-prompt", "Question: ...", max_new_tokens=16)  # decoder / T5 bases
    c.complete("qa-prompt", "Question: ...", max_tokens=16, temperature=0)  # OpenAI shape (decoder bases)
    c.adapters(); c.models(); c.health()
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

    def complete(self, model: str, prompt: str, **fields) -> dict[str, Any]:
        """POST /v1/completions (OpenAI shape; decoder bases); e.g. max_tokens=16, temperature=0."""
        return self._call("POST", "/v1/completions", json={"model": model, "prompt": prompt, **fields})

    def models(self) -> list[str]:
        """Ids of GET /v1/models: the base, then every servable adapter."""
        return [m["id"] for m in self._call("GET", "/v1/models")["data"]]

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
            body = resp.json()
            detail = body.get("detail") or (body.get("error") or {}).get("message") or resp.text
        except ValueError:
            detail = resp.text
        raise ServeError(resp.status_code, detail, resp.headers.get("retry-after"))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
