"""security/incidents: read one, comment on it, set its custom tags (GD `api/security-incident-get.md`,
`security-incident-post-comments.md`, `security-incident-update.md`)."""

from __future__ import annotations

from collections.abc import Sequence

from joedefender.adapters._microsoft.calls import segment
from joedefender.adapters.graph._calls import FAMILY, GraphCalls
from joedefender.adapters.graph.models import Comment, Incident

INCIDENTS = "/v1.0/security/incidents"


class IncidentCalls(GraphCalls):
    def get_incident(self, incident_id: str) -> Incident:
        response = self._get(f"{INCIDENTS}/{segment(incident_id)}", FAMILY, "get_incident")
        return self._model(response, Incident, "get_incident")

    def add_incident_comment(self, incident_id: str, text: str) -> list[Comment]:
        """POST a comment (incidents take the alert's comment type); Graph answers with the
        incident's whole comment list. Not repeated on an uncertain outcome: read the incident's
        comments before trying again."""
        return self._post_comment(f"{INCIDENTS}/{segment(incident_id)}/comments", text, "add_incident_comment")

    def set_incident_tags(self, incident_id: str, tags: Sequence[str]) -> Incident:
        """PATCH `customTags` to exactly `tags`. Whether Graph replaces the list or adds to it is not
        documented: send the whole list wanted (read, change, write), which is right either way
        for adding; a tag removed is gone only if Graph replaces."""
        response = self._transport.request(
            "PATCH",
            f"{INCIDENTS}/{segment(incident_id)}",
            family=FAMILY,
            operation="set_incident_tags",
            json={"customTags": list(tags)},
        )
        return self._model(response, Incident, "set_incident_tags")
