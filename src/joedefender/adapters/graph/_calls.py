"""What every Graph security call shares: its budget family and the comment POST (alerts and
incidents take the same alertComment and answer with the whole comment list)."""

from __future__ import annotations

from joedefender.adapters._microsoft.calls import Answers
from joedefender.adapters.graph.models import Comment

FAMILY = "graph.security"  # every /security call shares Graph's one budget (coverage.md 4.4)
_COMMENT_TYPE = "microsoft.graph.security.alertComment"


class GraphCalls(Answers):
    def _post_comment(self, path: str, text: str, operation: str) -> list[Comment]:
        """POST a comment to `path`; the comment list it answers with. Not repeated on an
        uncertain outcome: the caller reads the comments before trying again."""
        response = self._transport.request(
            "POST",
            path,
            family=FAMILY,
            operation=operation,
            json={"@odata.type": _COMMENT_TYPE, "comment": text},
            ok=(200, 201),
            idempotent=False,
        )
        return self._values(response, Comment, operation)
