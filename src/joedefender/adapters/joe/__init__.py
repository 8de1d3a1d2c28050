"""The Joe Sandbox adapter: a client on the official jbxapi (the core's verdicts and IOCs, errors as
types, bounded retries) and the `SandboxPort` over it."""

from joedefender.adapters.joe.client import JoeSandboxClient
from joedefender.adapters.joe.errors import (
    JoeAuthError,
    JoeQuotaError,
    JoeRequestError,
    JoeSandboxError,
    JoeUnavailableError,
)
from joedefender.adapters.joe.models import AnalysisRef, JoeAccount, SubmissionStatus
from joedefender.adapters.joe.naming import safe_sample_name
from joedefender.adapters.joe.port import JoeSandboxAdapter

__all__ = [
    "AnalysisRef",
    "JoeAccount",
    "JoeAuthError",
    "JoeQuotaError",
    "JoeRequestError",
    "JoeSandboxAdapter",
    "JoeSandboxClient",
    "JoeSandboxError",
    "JoeUnavailableError",
    "SubmissionStatus",
    "safe_sample_name",
]
