"""jobgate — the Python client of jobgate (SPEC §9).

    import jobgate
    c = jobgate.Client("http://127.0.0.1:8080")
    job = c.submit({"kind": "http", "provider": "mock", "request": {"path": "/json"}}, wait=10)
    job.status, job.result
"""
from ._async import AsyncClient
from ._core import RetryPolicy
from ._errors import AmbiguousSubmitError, APIError, JobgateError, WebhookVerificationError
from ._models import TERMINAL, Event, Job, JobList
from ._sync import Client
from .webhook import verify_webhook

__version__ = "0.1.0"
__all__ = ["Client", "AsyncClient", "Job", "JobList", "Event", "RetryPolicy", "APIError",
           "AmbiguousSubmitError", "JobgateError", "WebhookVerificationError", "verify_webhook",
           "TERMINAL", "__version__"]
