"""The connector's time: real timestamps, and the scale between nominal and real seconds.

Every duration the documentation and the settings give (a 30 s poll, a 30 min action timeout,
a day's quota window) is nominal seconds. Against a real tenant a nominal second is a real one;
the demo and the tests run the emulators on a faster clock and scale the connector's waits to
match, so one `Clock` with that `scale` is built by the host (through bootstrap) and every
conversion goes through it. Timestamps (`now`, and every time a record keeps) are real.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Clock:
    scale: float = 1.0  # real seconds per nominal second
    source: Callable[[], float] = field(default=time.time, repr=False)

    def now(self) -> float:
        """The real time, as a Unix timestamp."""
        return self.source()

    def real(self, nominal: float) -> float:
        """A nominal duration in real seconds."""
        return nominal * self.scale

    def nominal(self, real: float) -> float:
        """A real duration in nominal seconds."""
        return real / self.scale

    def since(self, moment: float) -> float:
        """Nominal seconds from the real timestamp `moment` until now."""
        return self.nominal(self.now() - moment)

    def after(self, nominal: float) -> float:
        """The real timestamp `nominal` seconds from now."""
        return self.now() + self.real(nominal)
