"""cvserve benchmarks: how close serving gets to the in-process limit, and to its peers.

`python -m tools.bench` (`make bench`) measures, in ONE run on one machine, every serving
option side by side so the ratios are meaningful: the in-process limit (handler called
directly, best batch size), the bare forward, a hand-written Flask server, LitServe with
batching, TorchServe with default settings and with cvserve's tuned archives.

Modules: `stats` (percentiles, one level's summary), `loadgen` (keep-alive HTTP load
generator), `subjects` (models, checkpoints, sample requests, in-process handlers),
`inprocess` (the limit), `flask_server` / `litserve_server` (the peers, run as
subprocesses), `servers` (starting those subprocesses), `torchserve_runner` (sandboxed
TorchServe with default and tuned archives), `report` (JSON, markdown, plot), `__main__`.
"""
