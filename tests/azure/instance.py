"""One Functions app instance in a process of its own, for the tests that kill it mid-run.

Reads the app settings from the environment (plus JOEDEFENDER_TEST_TIME_SCALE, and optionally
JOEDEFENDER_TEST_IN_FLIGHT: how long a delivered message stays hidden, real seconds), starts the
harness on every queue trigger, says "ready" and runs until its stdin closes or it is killed.
"""

from __future__ import annotations

import os
import sys

from tests.azure.rig import IN_FLIGHT, start_instance


def main() -> None:
    scale = float(os.environ["JOEDEFENDER_TEST_TIME_SCALE"])
    in_flight = float(os.environ.get("JOEDEFENDER_TEST_IN_FLIGHT", IN_FLIGHT))
    name = os.environ.get("JOEDEFENDER_TEST_NAME", "proc")
    instance = start_instance(os.environ, time_scale=scale, name=name, in_flight=in_flight)
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes it, or kills this process
    instance.stop()


if __name__ == "__main__":
    main()
