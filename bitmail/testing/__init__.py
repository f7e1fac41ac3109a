"""Loopback fakes of provider APIs, with fault injection, for tests and benchmarks.

    async with FakeMailgun(api_key="key", domain="mg.example.com") as fake:
        ...  # point a MailgunProvider at fake.url; fake.fail_next(2, 503)
"""

from .faults import Answer, FakeService, Fault, Faults, Received
from .mailgun import FakeMailgun
from .mandrill import FakeMandrill
from .webhooks import MailgunSigner, MandrillSigner, SnsSigner

__all__ = ["Answer", "FakeMailgun", "FakeMandrill", "FakeService", "Fault", "Faults",
           "MailgunSigner", "MandrillSigner", "Received", "SnsSigner"]
