"""cvserve's demo page: one static page plus a small proxy that adds TorchServe's tokens.

    python -m tools.demo [--port 8090] [--config config.properties] [--key-file key_file.json]

The browser never sees a key: it talks only to this process, which lets through the few
calls the page needs (predictions, explanations, the pipeline, a listing of models and
versions) and nothing else of the management API. See `tools/demo/server.py`.
"""
