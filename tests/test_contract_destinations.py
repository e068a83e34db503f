"""The built-in destinations pass the destination contract."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson
import pytest

from pqlhub import Destination, DestinationContext
from pqlhub.destinations import FileExport, Webhook
from pqlhub.redaction import Secret
from pqlhub.testing import (
    DestinationContract,
    RemoteDestinationContract,
    WebhookReceiver,
)

SIGNING_SECRET = "whsec-contract-7f3a9b"
TOKEN = "hook-token-51c2e8"


class TestWebhookContract(RemoteDestinationContract):
    enter_action = "send"
    exit_action = "send"

    @pytest.fixture
    def fake(self) -> Iterator[WebhookReceiver]:
        with WebhookReceiver(secret=SIGNING_SECRET, token=TOKEN) as receiver:
            yield receiver

    def make_destination(
        self, fake: WebhookReceiver, context: DestinationContext
    ) -> Destination:
        config = {
            "url": fake.url,
            "secret": Secret(SIGNING_SECRET, "env:HOOK_SECRET"),
            "headers": {"Authorization": Secret(f"Bearer {TOKEN}", "env:HOOK_AUTH")},
            "batch_size": 5,
        }
        return Webhook(config, context)

    def secrets(self, fake: WebhookReceiver) -> Sequence[str]:
        return [SIGNING_SECRET, TOKEN]


class _FileFake:
    """Reads the file export's snapshot back, as the contract's fake."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def members(self) -> set[tuple[str, str]]:
        if not self.path.exists():
            return set()
        lines = self.path.read_bytes().splitlines()
        return {(e["segment"], e["contact"]) for e in map(orjson.loads, lines)}


class TestFileExportContract(DestinationContract):
    enter_action = "add"
    exit_action = "remove"

    @pytest.fixture
    def fake(self, tmp_path: Path) -> _FileFake:
        return _FileFake(tmp_path / "export.jsonl")

    def make_destination(
        self, fake: _FileFake, context: DestinationContext
    ) -> Destination:
        return FileExport({"path": str(fake.path)}, context)
