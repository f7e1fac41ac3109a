"""The test support plugins (tests/support/, one module per concern).

Test modules and bench/ import helpers with `from conftest import ...`; the
names below keep that working. New helpers belong in a support module.
"""

import pytest

# Before the imports below: asserts in support helpers report their values.
pytest.register_assert_rewrite("support")

from support.harness import (
    PASSWORD,
    Part,
    Service,
    free_port,
    skip_without,
    start_service,
    wait_for,
    write_config,
)
from support.peers import (
    SES_ACCESS_KEY_ID,
    SES_REGION,
    SES_SECRET_KEY,
    SMTP_PASSWORD,
    SMTP_USERNAME,
    Delivery,
    Relay,
    Running,
    make_certificate_files,
    provider_toml,
    run_relay,
    sent_by_moto,
    server_context,
    ses_identity,
)
from support.postgres import PG_SERVER_URL, fresh_database, pg_admin, pg_database_url, pg_reset
from support.samples import (
    SAMPLE_ATTACHMENT,
    SAMPLE_SUBJECT,
    assert_same_mail,
    sample_job,
    send_expecting_error,
)
from support.serve import ServeProcess, serving
from support.webhooks import (
    HOOK_CONFIG,
    HOOK_KINDS,
    MAILGUN_EU_KEY,
    MAILGUN_KEY,
    MANDRILL_KEY,
    MANDRILL_URL,
    SES_TOPIC,
    assert_repeat_changes_nothing,
    hook_counts,
    hooks_idle,
    inbox,
    recipient_status,
    sent_message,
    sent_through,
    track,
)

pytest_plugins = [
    "support.harness",
    "support.serve",
    "support.samples",
    "support.postgres",
    "support.webhooks",
    "support.peers",
    "support.stores",
    "support.tmpfs",
]
