"""cvserve benchmarks: how close serving gets to the in-process limit, and to its peers.

`python -m tools.bench` (`make bench`) measures, in ONE run on one machine, every serving
option side by side, like for like, so the ratios are meaningful: the in-process limit
(handler called directly, best batch size) and the bare forward, Flask in one process and on
gunicorn, LitServe with batching, TorchServe with its real defaults and with cvserve's tuned
archives. Every one runs the tuned archive's forward (compiled or eager, torch threads) with
its CPU budget (workers x threads), reports what it really ran, and has its answers checked.

Modules: `stats` (percentiles, one level's summary, spreads over repeats), `loadgen`
(keep-alive HTTP load generator, timed levels), `subjects` (models, checkpoints, sample
requests, archive model-configs, in-process handlers, runtime records), `inprocess` (the
limit, reference answers), `answers` (the answer check), `machine` (cores, load average,
busy refusal), `flask_server` / `litserve_server` (the peers, run as subprocesses), `servers`
(starting those subprocesses), `torchserve_runner` (sandboxed TorchServe with default and
tuned archives), `report` (JSON, markdown, ratios, goals, plot), `__main__`.
"""
