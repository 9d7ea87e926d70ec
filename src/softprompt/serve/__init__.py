"""Multi-task serving: one frozen base model, many soft prompts, mixed-task batches.

    serve/app.py       create_app: the app assembled from the parts below
    serve/routes/      one router per API: classify, generate, openai (completions, chat, models),
                       admin (adapters), health, metrics
    serve/context.py   ServeContext (store, batcher, engine, generation service, metrics, settings),
                       handed to the routes through Depends(get_context); the token checks
    serve/protocol.py  every request and response body (the OpenAPI schema)
    serve/errors.py    Refused, QueueFull and the exception handlers (error bodies per API)
    serve/guard.py     request body limit (413) and request metrics (ASGI middleware)
    serve/mixed.py     one forward pass for rows of different adapters (mixed_logits)
    serve/batcher.py   bounded queue + dynamic batching of classification on one inference thread
    serve/engine.py    continuous batching of generation across adapters; serve/streams.py its requests
    serve/store.py     adapters loaded, checked and ready (hot load / unload, LRU under a budget)
    serve/metrics.py   Prometheus text
    serve/client.py    a small httpx client (no torch import)

Nothing is imported here, so `softprompt.serve.client` stays light.
"""
