"""Redaction: secrets never reach a message, a log line, a URL or a header dump."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import httpx
import pytest

from pqlhub.redaction import (
    MASK,
    RedactingFilter,
    Secret,
    forget_secrets,
    is_sensitive,
    redact,
    redact_headers,
    redact_url,
    remember_secret,
    scrub,
)

TOKEN = "pat-na1-0f3c9e2d"


@pytest.fixture
def token() -> Secret:
    return Secret(TOKEN, "env:HUBSPOT_TOKEN")


# ------------------------------------------------------------------------ redact


def test_redact_masks_every_remembered_value(token: Secret) -> None:
    remember_secret("whsec-771")

    text = f"Bearer {TOKEN} failed; signed with whsec-771 and {TOKEN} again"

    assert redact(text) == "Bearer *** failed; signed with *** and *** again"


def test_redact_leaves_text_alone_when_nothing_is_remembered() -> None:
    forget_secrets()

    assert redact("nothing secret here") == "nothing secret here"
    assert redact("") == ""


def test_redact_masks_a_secret_that_contains_another_whole() -> None:
    remember_secret("abcd")
    remember_secret("abcd-efgh-ijkl")

    assert redact("key abcd-efgh-ijkl, part abcd") == "key ***, part ***"


def test_redact_does_not_remember_short_values() -> None:
    Secret("abc", "env:SHORT")
    remember_secret("")

    assert redact("abc is a common prefix: abcabc") == "abc is a common prefix: abcabc"


def test_forget_secrets_stops_masking(token: Secret) -> None:
    forget_secrets()

    assert redact(f"token {TOKEN}") == f"token {TOKEN}"


def test_redact_masks_percent_encoded_values() -> None:
    value = "s3cr3t+with/reserved=chars and space"
    Secret(value, "file:secret.txt")
    form = httpx.Request("POST", "https://x.test", data={"client_secret": value})

    assert value not in redact(f"body: {form.content.decode()}")
    assert redact(f"body: {form.content.decode()}") == "body: client_secret=***"


# -------------------------------------------------------------------- redact_url


def test_redact_url_masks_user_info() -> None:
    shown = redact_url("https://alice:hunter22@api.example.test/v1/contacts")

    assert shown == "https://***@api.example.test/v1/contacts"


@pytest.mark.parametrize(
    "name",
    ["api_key", "apikey", "hapikey", "token", "access_token", "X-Signature", "secret"],
)
def test_redact_url_masks_sensitive_query_names(name: str) -> None:
    shown = redact_url(f"https://api.example.test/v1?{name}=v4lu3&limit=100")

    assert shown == f"https://api.example.test/v1?{name}=***&limit=100"


def test_redact_url_keeps_plain_query_and_fragment() -> None:
    url = "https://api.example.test/v1?after=abc&limit=&page=2#top"

    assert redact_url(url) == url


def test_redact_url_masks_a_secret_in_the_path(token: Secret) -> None:
    shown = redact_url(f"https://hooks.example.test/catch/{TOKEN}/run")

    assert shown == "https://hooks.example.test/catch/***/run"


def test_redact_url_masks_encoded_secrets_in_path_and_query() -> None:
    value = "tok en+b64/x=="
    Secret(value, "env:ODD")
    url = httpx.URL(f"https://api.example.test/p/{value}", params={"q": value})

    shown = redact_url(str(url))

    assert shown == "https://api.example.test/p/***?q=***"


def test_redact_url_leaves_a_url_without_query_alone() -> None:
    assert redact_url("https://api.example.test/v1/") == "https://api.example.test/v1/"


# ---------------------------------------------------------------- redact_headers


def test_redact_headers_masks_credentials_and_keeps_the_rest(token: Secret) -> None:
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "X-Api-Key": "k-123456",
        "Cookie": "session=abc",
        "Content-Type": "application/json",
        "X-Echo": f"sent {TOKEN}",
    }

    assert redact_headers(headers) == {
        "Authorization": MASK,
        "X-Api-Key": MASK,
        "Cookie": MASK,
        "Content-Type": "application/json",
        "X-Echo": f"sent {MASK}",
    }


def test_redact_headers_takes_pairs_and_httpx_headers() -> None:
    pairs = [("Private-App-Token", "x"), ("Accept", "*/*")]
    headers = httpx.Headers({"authorization": "Basic eA==", "user-agent": "pqlhub"})

    assert redact_headers(pairs) == {"Private-App-Token": MASK, "Accept": "*/*"}
    assert redact_headers(headers) == {"authorization": MASK, "user-agent": "pqlhub"}


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [
        ("Authorization", True),
        ("x-hubspot-signature-v3", True),
        ("client_secret", True),
        ("Content-Type", False),
        ("limit", False),
    ],
)
def test_is_sensitive_by_name(name: str, sensitive: bool) -> None:
    assert is_sensitive(name) is sensitive


# ----------------------------------------------------------------------- logging


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger whose one handler redacts and writes to a string."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("pqlhub.tests.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def test_redacting_filter_masks_record_args(
    token: Secret, log: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = log

    logger.warning("Sending with %s to %s", TOKEN, "crm")

    assert stream.getvalue() == "WARNING Sending with *** to crm\n"


def test_redacting_filter_masks_the_message_itself(
    token: Secret, log: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = log

    logger.info(f"token={TOKEN}")  # noqa: G004 - a careless f-string, on purpose

    assert stream.getvalue() == "INFO token=***\n"


def test_redacting_filter_keeps_records_without_secrets(
    token: Secret, log: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = log

    logger.info("%d contacts entered %r", 3, "qualified")

    assert stream.getvalue() == "INFO 3 contacts entered 'qualified'\n"


def test_redacting_filter_masks_exception_text(
    token: Secret, log: tuple[logging.Logger, io.StringIO]
) -> None:
    logger, stream = log

    def deliver() -> None:
        raise ValueError(f"HubSpot rejected {TOKEN}")

    try:
        deliver()
    except ValueError:
        logger.exception("Delivery failed")

    output = stream.getvalue()
    assert TOKEN not in output
    assert output.startswith("ERROR Delivery failed\nTraceback")
    assert output.rstrip().endswith("ValueError: HubSpot rejected ***")


def test_redacting_filter_passes_every_record() -> None:
    record = logging.LogRecord("pqlhub", logging.INFO, __file__, 1, "hi", None, None)

    assert RedactingFilter().filter(record) is True


# ------------------------------------------------------------------------ Secret


def test_secret_never_shows_its_value(token: Secret) -> None:
    assert repr(token) == "Secret('env:HUBSPOT_TOKEN')"
    assert str(token) == "<secret env:HUBSPOT_TOKEN>"
    assert f"{token}" == "<secret env:HUBSPOT_TOKEN>"
    assert TOKEN not in repr({"token": token, "list": [token]})


def test_secret_reveals_its_value_and_compares_by_it(token: Secret) -> None:
    assert token.reveal() == TOKEN
    assert token == Secret(TOKEN, "file:token.txt")
    assert token != Secret("another-value", "env:HUBSPOT_TOKEN")
    assert len({token, Secret(TOKEN, "env:OTHER")}) == 1


def test_secret_has_no_value_attribute_to_dump(token: Secret) -> None:
    assert not hasattr(token, "__dict__")
    assert token.reference == "env:HUBSPOT_TOKEN"


def test_scrub_replaces_secrets_by_their_references(token: Secret) -> None:
    config = {"token": token, "nested": {"echo": f"x {TOKEN}"}, "ids": (1, token)}

    assert scrub(config) == {
        "token": "<secret env:HUBSPOT_TOKEN>",
        "nested": {"echo": "x ***"},
        "ids": [1, "<secret env:HUBSPOT_TOKEN>"],
    }
