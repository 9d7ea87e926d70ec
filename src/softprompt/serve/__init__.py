"""Multi-task serving: one frozen base model, many soft prompts, mixed-task batches.

    serve/mixed.py    one forward pass for rows of different adapters (mixed_logits)
    serve/batcher.py  bounded queue + dynamic batching on one inference thread
    serve/store.py    adapters loaded, checked and ready (hot load / unload)
    serve/app.py      the FastAPI app (create_app); serve/metrics.py Prometheus text
    serve/client.py   a small httpx client (no torch import)

Nothing is imported here, so `softprompt.serve.client` stays light.
"""
