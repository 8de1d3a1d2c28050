"""The collection strategies: one line each, in the order the plan tries them within a reach.

The collect handler reads `STRATEGIES` when it is built, so a strategy added here (or, in a
test, set here before the connector is built) is planned, run and cleaned up like the others.
"""

from __future__ import annotations

from collections.abc import Sequence

from joedefender.pipeline.collection.decode import Decode
from joedefender.pipeline.collection.getfile import GetFile
from joedefender.pipeline.collection.locate import Locate
from joedefender.pipeline.collection.mdatp_restore import MdatpRestore
from joedefender.pipeline.collection.restore import Restore
from joedefender.pipeline.collection.strategy import CollectionStrategy

STRATEGIES: tuple[CollectionStrategy, ...] = (
    GetFile(),
    Locate(),
    Decode(),
    Restore(),
    MdatpRestore(),
)


def by_name(name: str, strategies: Sequence[CollectionStrategy] | None = None) -> CollectionStrategy | None:
    """The strategy an attempt or a cleanup names; None for one no longer registered."""
    return next((s for s in (STRATEGIES if strategies is None else strategies) if s.name == name), None)
