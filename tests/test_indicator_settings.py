"""The verdict-action settings: safe defaults, `Allowed` refused, every problem naming its setting."""

from __future__ import annotations

import pytest

from joedefender.bootstrap import indicator_policy, pipeline_config
from joedefender.settings import SettingsError
from tests.test_settings import settings_with


def test_the_defaults_are_off_malicious_only_and_audit() -> None:
    settings = settings_with()
    policy = indicator_policy(settings)
    assert not policy.enabled
    assert policy.verdicts == {"malicious"}
    assert policy.action("malicious", "FileSha256") == policy.action("suspicious", "Url") == "Audit"
    assert (policy.severity("malicious"), policy.severity("suspicious")) == ("High", "Medium")
    assert (policy.expiration_days, policy.per_sample_cap, policy.per_hour_cap) == (30, 50, 5000)
    assert policy.tenant_ceiling == 14000
    assert policy.rbac_group_names == ()
    assert not pipeline_config(settings).classify_alerts


def test_every_setting_reaches_the_policy() -> None:
    settings = settings_with(
        DefenderIndicatorsEnabled="true",
        DefenderIndicatorVerdicts="Malicious,suspicious",
        DefenderIndicatorActionForMaliciousFile="blockandremediate",
        DefenderIndicatorActionForMaliciousIPAddressURL="Block",
        DefenderIndicatorActionForSuspiciousIPAddressURL="Warn",
        DefenderIndicatorSeveritySuspicious="low",
        DefenderIndicatorExpirationDays="7",
        DefenderIndicatorRbacGroupNames="Servers, Finance laptops",
        DefenderIndicatorAllowList="corp.example,198.51.100.0/24",
        DefenderIndicatorSharedPlatforms="files.share.example, *.cdn.example",
        DefenderIndicatorMaxPerSample="10",
        DefenderIndicatorMaxPerHour="100",
        DefenderIndicatorTenantHeadroom="500",
        DefenderAlertClassification="yes",
    )
    policy = indicator_policy(settings)
    assert policy.enabled
    assert policy.verdicts == {"malicious", "suspicious"}
    assert policy.action("malicious", "FileSha256") == "BlockAndRemediate"
    assert policy.action("malicious", "DomainName") == "Block"
    assert policy.action("suspicious", "IpAddress") == "Warn"
    assert policy.action("suspicious", "FileSha256") == "Audit"
    assert policy.severity("suspicious") == "Low"
    assert policy.expiration_days == 7
    assert policy.rbac_group_names == ("Servers", "Finance laptops")
    assert policy.allow.domain_allowed("www.corp.example")
    assert policy.allow.platform("eu.files.share.example")
    assert policy.allow.platform("x.cdn.example")
    assert policy.allow.platform("raw.githubusercontent.com")  # the shipped list stays
    assert (policy.per_sample_cap, policy.per_hour_cap, policy.tenant_ceiling) == (10, 100, 14500)
    assert pipeline_config(settings).classify_alerts


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("DefenderIndicatorActionForMaliciousFile", "Allowed", "'Allowed' is refused"),
        ("DefenderIndicatorActionForMaliciousIPAddressURL", "allowed", "'Allowed' is refused"),
        ("DefenderIndicatorActionForSuspiciousIPAddressURL", "BlockAndRemediate", "not one of Audit, Warn, Block"),
        ("DefenderIndicatorActionForSuspiciousFile", "Alert", "not one of"),
        ("DefenderIndicatorVerdicts", "clean", "not one of malicious, suspicious"),
        ("DefenderIndicatorSeverityMalicious", "Critical", "not one of Informational, Low, Medium, High"),
        ("DefenderIndicatorExpirationDays", "0", "between 1 and 365"),
        ("DefenderIndicatorMaxPerSample", "501", "between 1 and 500"),
        ("DefenderIndicatorTenantHeadroom", "-1", "between 0 and 15000"),
        ("DefenderIndicatorAllowList", "a b", "values without spaces"),
        ("DefenderIndicatorSharedPlatforms", "files.example.com,http://x.example/", "not host names"),
        ("DefenderIndicatorSharedPlatforms", "localhost", "not host names"),
        ("DefenderAlertClassification", "maybe", "not true or false"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(name: str, value: str, says: str) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_with(**{name: value})
    assert caught.value.setting == name
    assert says in caught.value.problem
