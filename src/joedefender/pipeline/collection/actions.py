"""One runner for live response actions, for collection and for cleanup alike.

It holds the machine (one live response per machine at a time: a lease in the store, within
the tenant's session cap), uploads the library scripts a strategy needs, launches an action
whose comment carries the caller's marker, looks at it on an adaptive schedule, reads what it
left, cancels it when it outlives its timeout, and, before anything is repeated after a crash,
looks for the action a lost step may have launched (`find`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from joedefender.domain.errors import Busy, NotFound, Throttled
from joedefender.domain.liveresponse import Command, LiveResponseAction
from joedefender.pipeline.collection.strategy import ActionResults, LibraryScript
from joedefender.pipeline.context import Context
from joedefender.pipeline.pacing import PollPlan


@dataclass(frozen=True)
class Refused:
    """Defender did not start the action: another session holds the machine (`elsewhere`), or
    the call was throttled (`retry_after`, real seconds, when Defender said)."""

    elsewhere: bool
    retry_after: float | None = None


@dataclass(frozen=True)
class _Results:
    ctx: Context
    action_id: str

    def script_output(self, index: int) -> str:
        return self.ctx.defender.script_output(self.action_id, index)

    def stream(self, index: int, *, max_bytes: int) -> AbstractContextManager[Iterator[bytes]]:
        return self.ctx.defender.stream_file(self.action_id, index, max_bytes=max_bytes)


class ActionRunner:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._polls = PollPlan(ctx.config.action_polls_per_minute)
        self._scripts_ready: set[str] = set()
        self._script_lock = threading.Lock()

    def hold(self, machine_id: str, owner: str, nominal: float) -> bool:
        """Take or renew the machine's live response lease for `owner`, for `nominal` seconds;
        False while another owner holds it or the session cap is reached."""
        ctx = self._ctx
        now = ctx.now()
        until = now + ctx.clock.real(nominal)
        return ctx.store.acquire(machine_id, owner, now, until, ctx.config.max_live_response_sessions)

    def release(self, machine_id: str, owner: str) -> None:
        self._ctx.store.release(machine_id, owner)

    def ensure(self, scripts: Iterable[LibraryScript]) -> None:
        """Upload the scripts to the library unless this process did already."""
        with self._script_lock:
            for script in scripts:
                if script.name in self._scripts_ready:
                    continue
                self._ctx.defender.ensure_library_file(
                    script.name,
                    script.content(),
                    description=script.description,
                    parameters_description=script.parameters,
                )
                self._scripts_ready.add(script.name)

    def launch(self, machine_id: str, commands: Sequence[Command], comment: str) -> LiveResponseAction | Refused:
        """Start the action (its comment carries the caller's marker); `Refused` when Defender
        says another session holds the machine, or throttles the call."""
        try:
            return self._ctx.defender.run_live_response(machine_id, commands, comment)
        except Busy:
            return Refused(elsewhere=True)
        except Throttled as exc:
            return Refused(elsewhere=False, retry_after=exc.retry_after)

    def find(self, machine_id: str, *marks: str) -> LiveResponseAction | None:
        """The machine's action whose comment carries every one of `marks`: what a step that
        died between launching and recording it launched."""
        for action in self._ctx.defender.list_actions(machine_id):
            if all(mark in action.comment for mark in marks):
                return action
        return None

    def look(self, action_id: str) -> LiveResponseAction | None:
        """The action as it stands; None while Defender does not show it (mde-api.md section 3:
        a new action may be missing for a moment)."""
        try:
            return self._ctx.defender.get_action(action_id)
        except NotFound:
            return None

    def results(self, action_id: str) -> ActionResults:
        return _Results(self._ctx, action_id)

    def overdue(self, started_at: float) -> bool:
        """Whether an action asked for at `started_at` has outlived the action timeout."""
        return self._ctx.clock.since(started_at) > self._ctx.config.action_timeout

    def next_look(self, started_at: float) -> float:
        """Real seconds until the next look at an action asked for at `started_at`: from its
        elapsed time, the shortest recent action, and the poll budget every session shares."""
        ctx = self._ctx
        nominal = self._polls.next_look(ctx.clock.since(started_at), ctx.store.active(ctx.now()))
        return ctx.clock.real(nominal)

    def ended(self, started_at: float) -> None:
        """An action asked for at `started_at` was seen ended (the next looks learn from it)."""
        self._polls.finished(self._ctx.clock.since(started_at))

    def cancel(self, action: LiveResponseAction, why: str) -> None:
        try:
            self._ctx.defender.cancel_action(action.id, f"joedefender: {why}")
        except (NotFound, Busy):
            pass
        except Exception as exc:  # a failed cancel must not keep the caller from moving on
            self._ctx.record("cancel", "collect", "cancel failed", f"{action.id}: {type(exc).__name__}")
