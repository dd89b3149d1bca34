"""Running probes: each one bounded in time, never raising, recorded in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable

from wsgate.doctor.http_client import describe_error
from wsgate.doctor.model import CHECK_ORDER, Check, CheckId, ErrorFacts, Verdict

Probe = Callable[[], Awaitable[Verdict]]


class Recorder:
    """Collects checks in order; a failed step can skip the rest of its branch."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.checks: list[Check] = []

    async def run(self, check_id: CheckId, probe: Probe, limit: float | None = None) -> Check:
        start = time.monotonic()
        try:
            async with asyncio.timeout(limit or self.timeout):
                verdict = await probe()
        except Exception as exc:  # a probe reports; it never takes the doctor down
            verdict = Verdict("fail", describe_error(exc), ErrorFacts(describe_error(exc)))
        check = Check(check_id, verdict.status, verdict.detail,
                      round((time.monotonic() - start) * 1000, 1), verdict.facts)
        self.checks.append(check)
        return check

    def skip(self, check_ids: Iterable[CheckId], reason: str) -> None:
        self.checks.extend(Check(i, "skip", reason) for i in check_ids)

    def skip_rest(self, after: CheckId, planned: Iterable[CheckId], reason: str) -> None:
        """Skip every planned check that comes after `after` in the check order."""
        later = CHECK_ORDER[CHECK_ORDER.index(after) + 1:]
        wanted = set(planned)
        self.skip([c for c in later if c in wanted], reason)
