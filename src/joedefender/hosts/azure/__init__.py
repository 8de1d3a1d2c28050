"""The Azure Functions host (Python v2 programming model): the same connector as the standalone
service, driven by the Functions runtime instead of threads.

`functions.build_app` registers the triggers on a `func.FunctionApp`; `deploy/functionapp/function_app.py`
(what the host loads) only calls it. Each trigger is a small module: `http_triggers` (alert intake,
status), `queue_trigger` (advance one work item), `timers` (the poller, the sweeper). `runtime` opens the
connector once per worker process; `telemetry` puts the ids a log line is about into its custom
dimensions.
"""
