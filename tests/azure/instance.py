"""One Functions app instance in a process of its own, for the tests that kill it mid-run.

Reads the app settings from the environment (plus JOEDEFENDER_TEST_TIME_SCALE), starts the
harness on every queue trigger, says "ready" and runs until its stdin closes or it is killed.
"""

from __future__ import annotations

import os
import sys

from tests.azure.rig import start_instance


def main() -> None:
    scale = float(os.environ["JOEDEFENDER_TEST_TIME_SCALE"])
    instance = start_instance(os.environ, time_scale=scale, name=os.environ.get("JOEDEFENDER_TEST_NAME", "proc"))
    print("ready", flush=True)
    sys.stdin.read()  # until the test closes it, or kills this process
    instance.stop()


if __name__ == "__main__":
    main()
