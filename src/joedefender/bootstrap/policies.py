"""The core's configuration from the settings: the pipeline's rules and the verdict actions."""

from __future__ import annotations

from typing import Literal, cast

from joedefender.domain.indicator_values import AllowList
from joedefender.domain.indicators import IndicatorAction, IndicatorPolicy, Severity
from joedefender.domain.os_binaries import OsBinaryRules
from joedefender.domain.policy import ResubmitPolicy
from joedefender.domain.process_evidence import ProcessPolicy
from joedefender.domain.triage import AlertFilters
from joedefender.domain.verdicts import Detection
from joedefender.pipeline.config import PipelineConfig
from joedefender.settings import Settings


def pipeline_config(settings: Settings) -> PipelineConfig:
    return PipelineConfig(
        filters=AlertFilters.of(
            settings.defender_alert_detection_source,
            settings.defender_alert_severity,
            settings.defender_alert_status,
            settings.defender_alert_title_filter,
        ),
        resubmit=ResubmitPolicy.of(settings.joe_sandbox_resubmit, settings.joe_sandbox_resubmit_after_days),
        analysis_timeout=settings.joe_sandbox_analysis_job_timeout.total_seconds(),
        machine_availability_timeout=settings.machine_availability_timeout.total_seconds(),
        machine_availability_retry=settings.machine_availability_retry,
        process=ProcessPolicy(
            images=settings.analyse_process_images,
            targets=settings.fetch_command_line_targets,
            os_rules=OsBinaryRules.with_extra(settings.extra_os_binary_rules),
        ),
        fetch_quarantined_files=settings.fetch_quarantined_files,
        allow_quarantine_restore=settings.allow_quarantine_restore,
        indicators=indicator_policy(settings),
        classify_alerts=settings.defender_alert_classification,
        incident_tags=settings.defender_incident_tags,
        incident_comments=settings.defender_incident_comments,
    )


def indicator_policy(settings: Settings) -> IndicatorPolicy:
    """The verdict actions the settings ask for (the settings have validated every value)."""
    actions: dict[tuple[Detection, str], str] = {
        ("malicious", "file"): settings.defender_indicator_action_malicious_file,
        ("malicious", "network"): settings.defender_indicator_action_malicious_network,
        ("suspicious", "file"): settings.defender_indicator_action_suspicious_file,
        ("suspicious", "network"): settings.defender_indicator_action_suspicious_network,
    }
    severities = {
        "malicious": settings.defender_indicator_severity_malicious,
        "suspicious": settings.defender_indicator_severity_suspicious,
    }
    return IndicatorPolicy(
        enabled=settings.defender_indicators_enabled,
        verdicts=cast(frozenset[Detection], settings.defender_indicator_verdicts),
        actions=cast(dict[tuple[Detection, Literal["file", "network"]], IndicatorAction], actions),
        severities=cast(dict[Detection, Severity], severities),
        expiration_days=settings.defender_indicator_expiration_days,
        rbac_group_names=settings.defender_indicator_rbac_group_names,
        allow=AllowList.extended(
            settings.defender_indicator_allow_list, platforms=settings.defender_indicator_shared_platforms
        ),
        per_sample_cap=settings.defender_indicator_max_per_sample,
        per_hour_cap=settings.defender_indicator_max_per_hour,
        tenant_headroom=settings.defender_indicator_tenant_headroom,
    )
