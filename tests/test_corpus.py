"""Each provider's documented sample payloads (tests/data/webhooks/), signed
with bitmail.testing's signers and fed through BitMail's hooks: each is
accepted, and the notice recorded for it carries the normalized events listed
beside the sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bitmail.testing import MailgunSigner, MandrillSigner, SnsSigner
from bitmail.web.hooks import SNS_CLIENT

from conftest import MAILGUN_KEY, MANDRILL_KEY, MANDRILL_URL, SES_TOPIC, hooks_idle

DATA = Path(__file__).parent / "data" / "webhooks"
CORPUS = {name: json.loads((DATA / f"{name}.json").read_text())["samples"]
          for name in ("mailgun", "mailgun-legacy", "mandrill", "ses")}
CASES = [pytest.param(source, sample, id=f"{source}-{sample}")
         for source, samples in CORPUS.items() for sample in samples]


async def post(service: Any, source: str, sample: dict[str, Any]) -> Any:
    client = service.client
    if source == "mailgun":
        return await MailgunSigner(MAILGUN_KEY).post_event(client, "/hooks/mailgun",
                                                          sample["event-data"])
    if source == "mailgun-legacy":
        return await MailgunSigner(MAILGUN_KEY).post_form(client, "/hooks/mailgun",
                                                         sample["fields"])
    if source == "mandrill":
        return await MandrillSigner(MANDRILL_KEY, MANDRILL_URL).post_events(
            client, "/hooks/mandrill", [sample["event"]])
    sns = SnsSigner()
    client.app[SNS_CLIENT].fetch = sns.fetch
    return await sns.post(client, "/hooks/ses", sns.notification(SES_TOPIC, sample["message"]))


def check(item: dict[str, Any], expected: dict[str, Any]) -> None:
    assert item["kind"] == expected["kind"], item
    for key in ("type", "recipient", "provider_message_id", "message_id"):
        if key in expected:
            assert item.get(key) == expected[key], (key, item)
    if "detail" in expected:
        assert expected["detail"] in " ".join(item.get("detail", "").split()), item


@pytest.mark.parametrize(("source", "sample"), CASES)
async def test_a_documented_sample_becomes_its_normalized_events(hook_service, source, sample):
    data = CORPUS[source][sample]
    resp = await post(hook_service, source, data)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "accepted"
    await hooks_idle(hook_service)
    [notice] = await hook_service.runtime.store.get("notice")
    assert notice["state"] == "done", notice
    items = notice["items"]
    assert len(items) == len(data["expect"]), items
    for item, expected in zip(items, data["expect"], strict=True):
        check(item, expected)


async def test_an_sns_subscription_confirmation_signed_by_the_helper_is_confirmed(
        hook_service):
    sns = SnsSigner(version="2")
    hook_service.client.app[SNS_CLIENT].fetch = sns.fetch
    message = sns.subscription(SES_TOPIC)
    resp = await sns.post(hook_service.client, "/hooks/ses", message)
    assert resp.status == 200, await resp.text()
    assert sns.confirmed == [message["SubscribeURL"]]
