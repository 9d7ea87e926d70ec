"""The HTTP API, one router per API (each a module-level `APIRouter`; the routes get the app's
`ServeContext` through `Depends(get_context)`):

    classify.py   POST /v1/classify
    generate.py   POST /v1/generate
    admin.py      GET /v1/adapters, POST and DELETE /v1/adapters/{name}
    health.py     GET /healthz
    metrics.py    GET /metrics
    openai.py     GET /v1/models, /v1/models/{model}; POST /v1/completions, /v1/chat/completions
"""
