"""Alerts in: intake (record an alert id and answer at once), the bulk reads of alerts taken in
without their data, the poller's window, and triage (the filters, and the alert's evidence
attached to sample jobs)."""
