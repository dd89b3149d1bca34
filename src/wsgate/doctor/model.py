"""What the doctor records: checks with typed facts, diagnoses, the report (no I/O).

Each check id has one facts type, so the diagnosis rules read `upgrade.status`,
not a string key that silently yields None when misspelt. `CHECK_ORDER` is the
one place that says in which order the checks run and are reported.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar, get_args

Status = Literal["pass", "fail", "warn", "skip"]
Severity = Literal["error", "warning"]
# Where on the path client → edge → origin a cause sits (for the path picture).
Where = Literal["client-edge", "edge", "edge-origin", "origin", "path"]

# Check ids, in probe order. Stable: they are part of the --json interface.
CheckId = Literal[
    "redirects", "dns", "tcp", "tls", "http", "health", "host-config", "upgrade",
    "upgrade-origin", "session", "affinity", "idle", "forwarded",
    "origin-http-no-secret", "origin-upgrade-no-secret", "origin-with-secret",
]
CHECK_ORDER: tuple[CheckId, ...] = get_args(CheckId)
# The checks on the public URL; the rest probe `--origin` directly.
PUBLIC_CHECKS: tuple[CheckId, ...] = CHECK_ORDER[: CHECK_ORDER.index("forwarded") + 1]
STREAMLIT_ONLY: frozenset[CheckId] = frozenset({"health", "host-config", "session", "affinity"})


@dataclass(frozen=True)
class RedirectFacts:
    """`redirects` (with --follow): the URLs visited, the given one first."""

    chain: tuple[str, ...] = ()
    statuses: tuple[int, ...] = ()  # the answer at each URL of the chain that answered
    looped: bool = False  # came back to a URL already seen, or too many hops
    final: str | None = None  # where it ended (the other checks probe its directory)


@dataclass(frozen=True)
class DnsFacts:
    host: str = "?"
    addresses: tuple[str, ...] = ()


@dataclass(frozen=True)
class TcpFacts:
    target: str = "?"  # HOST:PORT tried (all of them when none connected)
    address: str | None = None  # the address that connected


@dataclass(frozen=True)
class TlsFacts:
    version: str = "?"
    verified: bool = False
    expires_in_days: float | None = None


@dataclass(frozen=True)
class HttpFacts:
    """`http`, `health` and `host-config`: one plain GET."""

    status: int = 0
    proxies: Mapping[str, str] = field(default_factory=dict)  # server, via, cf-ray, ...


@dataclass(frozen=True)
class UpgradeFacts:
    """`upgrade` (no Origin header) and `upgrade-origin` (a browser's Origin)."""

    status: int = 0
    handshake_problems: tuple[str, ...] = ()
    offered: tuple[str, ...] = ()
    selected: str | None = None
    origin: str | None = None
    proxies: Mapping[str, str] = field(default_factory=dict)
    closed_early: bool = False
    close_code: int | None = None  # None with closed_early: dropped without a close frame


@dataclass(frozen=True)
class SessionFacts:
    status: int | None = None
    close_code: int | None = None
    script_finished: bool = False
    messages: int = 0


@dataclass(frozen=True)
class AffinityFacts:
    """Reconnects offering the previous session id, with other clients' requests in
    between: did each come back to the same Streamlit session?"""

    reconnects: int = 0  # reconnects made (each with its session id)
    kept: int = 0  # of those, how many resumed the same session
    lost_at: int | None = None  # the reconnect that came back with a new session


@dataclass(frozen=True)
class IdleFacts:
    status: int = 101
    dropped_after_s: float | None = None  # None: held for the whole time
    close_code: int | None = None


@dataclass(frozen=True)
class ForwardedFacts:
    """What the origin received through the edge (read from wsgate's echo endpoint)."""

    public_scheme: str = "https"
    proto: str | None = None  # X-Forwarded-Proto
    host: str | None = None  # X-Forwarded-Host
    client: str | None = None  # first X-Forwarded-For entry
    spoofed_headers: tuple[str, ...] = ()
    spoof_ip: str = "?"


@dataclass(frozen=True)
class RefusalFacts:
    """`origin-http-no-secret`, `origin-upgrade-no-secret`: must be refused."""

    status: int = 0
    answered: bool = False  # answered for real: the guard let it through


@dataclass(frozen=True)
class SecretFacts:
    http_status: int = 0
    upgrade_status: int = 0


@dataclass(frozen=True)
class ErrorFacts:
    """Any check whose probe could not get an answer (refused, timed out, TLS...)."""

    error: str


Facts = (RedirectFacts | DnsFacts | TcpFacts | TlsFacts | HttpFacts | UpgradeFacts
         | SessionFacts | AffinityFacts | IdleFacts | ForwardedFacts | RefusalFacts
         | SecretFacts | ErrorFacts)

FACTS_TYPE: Mapping[CheckId, type[Facts]] = {
    "redirects": RedirectFacts, "dns": DnsFacts, "tcp": TcpFacts, "tls": TlsFacts,
    "http": HttpFacts, "health": HttpFacts, "host-config": HttpFacts,
    "upgrade": UpgradeFacts, "upgrade-origin": UpgradeFacts, "session": SessionFacts,
    "affinity": AffinityFacts,
    "idle": IdleFacts, "forwarded": ForwardedFacts, "origin-http-no-secret": RefusalFacts,
    "origin-upgrade-no-secret": RefusalFacts, "origin-with-secret": SecretFacts,
}

F = TypeVar("F", bound=Facts)


@dataclass(frozen=True)
class Verdict:
    """What one probe returns: the check's status, its line of text, its facts."""

    status: Status
    detail: str
    facts: Facts | None = None


@dataclass(frozen=True)
class Check:
    """One probe step: what the user sees, plus typed facts for the diagnosis table."""

    id: CheckId
    status: Status
    detail: str
    duration_ms: float = 0.0
    facts: Facts | None = None

    def __post_init__(self) -> None:
        expected = FACTS_TYPE[self.id]
        if self.facts is not None and not isinstance(self.facts, expected | ErrorFacts):
            raise TypeError(f"check {self.id!r} carries {type(self.facts).__name__}, "
                            f"not {expected.__name__}")


@dataclass(frozen=True)
class Diagnosis:
    id: str
    severity: Severity
    summary: str
    evidence: str
    fix: str
    where: Where


@dataclass(frozen=True)
class Report:
    url: str
    checks: tuple[Check, ...]
    diagnoses: tuple[Diagnosis, ...]

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnoses)

    def check(self, check_id: CheckId) -> Check | None:
        return next((c for c in self.checks if c.id == check_id), None)


class Findings:
    """Read-only view of the checks by id, for the diagnosis rules."""

    def __init__(self, checks: Sequence[Check]) -> None:
        self._by_id = {c.id: c for c in checks}

    def status(self, check_id: CheckId) -> Status | None:
        check = self._by_id.get(check_id)
        return None if check is None else check.status

    def failed(self, check_id: CheckId) -> bool:
        return self.status(check_id) == "fail"

    def detail(self, check_id: CheckId) -> str:
        check = self._by_id.get(check_id)
        return "" if check is None else check.detail

    def get(self, check_id: CheckId, kind: type[F]) -> F | None:
        """The check's facts when it recorded facts of `kind`, else None."""
        check = self._by_id.get(check_id)
        facts = None if check is None else check.facts
        return facts if isinstance(facts, kind) else None

    def http_status(self, check_id: CheckId) -> int | None:
        """The HTTP status a plain GET or an upgrade got, None without an answer."""
        check = self._by_id.get(check_id)
        facts = None if check is None else check.facts
        return facts.status if isinstance(facts, HttpFacts | UpgradeFacts) else None
