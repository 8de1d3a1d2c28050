"""The workflow: intake, triage, sample jobs, write-back. Pure orchestration over the ports."""
