"""One message to more recipients than a provider takes in one call.

SES takes 50 recipients a call, Mailgun 1,000, an SMTP relay often 100 (RFC
5321 §4.5.3.1.8 asks relays to take at least 100). The runner sends such a job
in chunks, one call after another, and turns the calls into one outcome:

- every chunk accepted: accepted, each recipient with its chunk's id;
- the first call fails transiently or by the provider's fault, before any
  chunk went out: the whole job fails that way (and fails over, whole);
- otherwise accepted, with each failed chunk's recipients refused with that
  chunk's outcome: the container retries exactly those later, alone, and
  never sends a chunk that went out again;
- every chunk refused for good: permanent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from ..outbox import Job
from .outcomes import Outcome, RecipientFailure, SendResult

__all__ = ["Call", "send_in_chunks"]


@dataclass(frozen=True, slots=True)
class Call:
    """One provider call's classified outcome."""

    outcome: Outcome
    result: SendResult | None = None
    detail: str = ""
    ambiguous: bool = False


async def send_in_chunks(call: Callable[[Job], Awaitable[Call]], job: Job,
                         limit: int) -> Call:
    """Send `job` through `call` in chunks of at most `limit` recipients."""
    refused: list[RecipientFailure] = []
    ids: dict[str, str] = {}
    first_id: str | None = None
    accepted = 0
    first_failure: Call | None = None
    for start in range(0, len(job.recipients), limit):
        chunk = job.recipients[start:start + limit]
        done = await call(replace(job, recipients=chunk))
        if done.outcome == Outcome.ACCEPTED:
            result = done.result or SendResult()
            accepted += 1
            first_id = first_id or result.provider_message_id
            refused.extend(result.refused)
            for recipient in chunk:
                own = result.recipient_ids.get(recipient) or result.provider_message_id
                if own:
                    ids[recipient] = own
            continue
        first_failure = first_failure or done
        if accepted == 0 and done.outcome != Outcome.PERMANENT:
            return done  # nothing went out: the job fails whole, as one call would
        refused.extend(RecipientFailure(r, done.outcome, done.detail, done.ambiguous)
                       for r in chunk)
    if accepted == 0:
        assert first_failure is not None
        return first_failure  # every chunk refused for good
    # Ids only where they differ from the first chunk's, which stands for the send.
    ids = {r: i for r, i in ids.items() if i != first_id}
    return Call(Outcome.ACCEPTED, SendResult(first_id, tuple(refused), ids))
