"""Joe Sandbox client on the official jbxapi: typed verdicts and IOCs, errors as types, bounded retries."""

from joedefender.clients.joe.client import JoeSandboxClient
from joedefender.clients.joe.errors import (
    JoeAuthError,
    JoeQuotaError,
    JoeRequestError,
    JoeSandboxError,
    JoeUnavailableError,
)
from joedefender.clients.joe.models import (
    AnalysisRef,
    Detection,
    Ioc,
    IocSet,
    JoeAccount,
    SubmissionStatus,
    Verdict,
)
from joedefender.clients.joe.naming import safe_sample_name
from joedefender.clients.joe.retry import RetryPolicy

__all__ = [
    "AnalysisRef",
    "Detection",
    "Ioc",
    "IocSet",
    "JoeAccount",
    "JoeAuthError",
    "JoeQuotaError",
    "JoeRequestError",
    "JoeSandboxClient",
    "JoeSandboxError",
    "JoeUnavailableError",
    "RetryPolicy",
    "SubmissionStatus",
    "Verdict",
    "safe_sample_name",
]
