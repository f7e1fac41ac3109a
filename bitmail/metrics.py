"""What the service counts for Prometheus, with prometheus-client.

The counters here are process-wide (the library's default registry), the
way Prometheus scrapes a process: each BitMail process has its own. What
is read from the runtime at scrape time (outbox size and age, provider
state and send latency) is added by `bitmail.web.status`.

Label values come from small fixed sets (route templates, status codes,
provider names from the configuration, event types), never from a request's
own text, so no client can make the series grow without bound.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram, disable_created_metrics

# No `*_created` series beside every counter: Prometheus does not use them,
# and they double what an operator scrolls through.
disable_created_metrics()  # type: ignore[no-untyped-call]

MESSAGES_ACCEPTED = Counter(
    "bitmail_messages_accepted",
    "Messages stored durably and acknowledged (HTTP 202, SMTP 250).")

HTTP_REQUESTS = Counter(
    "bitmail_http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"])

LOGIN_FAILURES = Counter(
    "bitmail_login_failures",
    "Refused credentials: a wrong password or unknown user, or an unknown API key.",
    ["via"])  # web | smtp | api_key

WEBHOOK_EVENTS = Counter(
    "bitmail_webhook_events",
    "Verified provider webhook events applied, by provider and normalized type.",
    ["provider", "type"])

STORE_COMMIT_SECONDS = Histogram(
    "bitmail_store_commit_seconds",
    "Time from handing a batch to the store until it is durable (group commit included).",
    ["store"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0))
