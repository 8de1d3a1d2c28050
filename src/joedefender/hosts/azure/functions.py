"""The Functions app: every trigger registered on one `func.FunctionApp` (Python v2 model).

No `from __future__ import annotations` here: the Python worker reads the trigger parameters'
annotations (`func.HttpRequest`, `func.QueueMessage`, `func.TimerRequest`) as real types.
The queue triggers bind to the queue names the store sends to (`ports.queue_names`, from
StoragePrefix) on the `AzureWebJobsStorage` connection; the batching and retry knobs are in
host.json (deploy/functionapp/host.json, explained there and in the README).
"""

import azure.functions as func
from joedefender.hosts.azure import http_triggers, page_trigger, queue_trigger, telemetry, timers
from joedefender.hosts.azure.ports import DEFAULT_PREFIX, LIVE_RESPONSE, WORK, queue_names
from joedefender.hosts.azure.runtime import Runtime

CONNECTION = "AzureWebJobsStorage"
POLL_SCHEDULE = "0 * * * * *"  # every minute, as the standalone's PollIntervalSeconds default
SWEEP_SCHEDULE = "0 */5 * * * *"  # every 5 minutes: a lost message costs at most that, plus the grace
SWEEP_PERIOD = 300.0  # seconds: SWEEP_SCHEDULE's period
# Every 15 s: an item whose holder died (its lease ran out; its message comes back only after the
# host's 10 minutes) is woken within a lease (60 s), this and bootstrap.azure.LEASE_GRACE: within 2 minutes.
RELAY_SCHEDULE = "*/15 * * * * *"
RELAY_PERIOD = 15.0  # seconds: RELAY_SCHEDULE's period


def build_app(runtime: Runtime, *, queues: dict[str, str] | None = None) -> func.FunctionApp:
    """The app with its triggers; `queues` (role -> name) defaults to the default prefix's."""
    names = queues or queue_names(DEFAULT_PREFIX)
    telemetry.install()
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.function_name("alerts")
    @app.route(route="alerts", methods=[func.HttpMethod.POST])
    def alerts(req: func.HttpRequest) -> func.HttpResponse:
        return http_triggers.receive_alert(runtime, req)

    @app.function_name("joeaz_alerts")  # JoeAz's path, so its Logic App needs only the new host name and key
    @app.route(route="JoeSandboxDefender", methods=[func.HttpMethod.POST])
    def joeaz_alerts(req: func.HttpRequest) -> func.HttpResponse:
        return http_triggers.receive_alert(runtime, req)

    @app.function_name("status")
    @app.route(route="status/{alert_id?}", methods=[func.HttpMethod.GET])
    def status(req: func.HttpRequest) -> func.HttpResponse:
        return http_triggers.alert_status(runtime, req)

    @app.function_name("ui")  # the operator's page, on a key of its own
    @app.route(route=page_trigger.ROUTE, methods=[func.HttpMethod.GET])
    def ui(req: func.HttpRequest) -> func.HttpResponse:
        return page_trigger.page(runtime, req)

    @app.function_name("work")
    @app.queue_trigger(arg_name="message", queue_name=names[WORK], connection=CONNECTION)
    def work(message: func.QueueMessage) -> None:
        queue_trigger.advance(runtime, message)

    @app.function_name("liveresponse")
    @app.queue_trigger(arg_name="message", queue_name=names[LIVE_RESPONSE], connection=CONNECTION)
    def liveresponse(message: func.QueueMessage) -> None:
        queue_trigger.advance(runtime, message)

    @app.function_name("poller")
    @app.timer_trigger(arg_name="timer", schedule=POLL_SCHEDULE, run_on_startup=False, use_monitor=True)
    def poller(timer: func.TimerRequest) -> None:
        timers.poll(runtime)

    @app.function_name("relay")
    @app.timer_trigger(arg_name="timer", schedule=RELAY_SCHEDULE, run_on_startup=False, use_monitor=False)
    def relay(timer: func.TimerRequest) -> None:
        timers.relay_once(runtime)

    @app.function_name("sweeper")
    @app.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE, run_on_startup=False, use_monitor=True)
    def sweeper(timer: func.TimerRequest) -> None:
        timers.sweep_once(runtime)

    return app
