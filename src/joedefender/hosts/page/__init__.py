"""The operator's page: the connector's state at a glance, for the standalone service (/ui) and
the Azure Functions app (its `ui` function), rendered by the same code for both.

Read-only and from the store alone (the facade's `Status`), server-rendered HTML with no script,
charts as inline SVG, every attacker-sourced value escaped and bounded (`render`).
"""

from joedefender.hosts.page.links import Links
from joedefender.hosts.page.site import Answer, serve

__all__ = ["Answer", "Links", "serve"]
