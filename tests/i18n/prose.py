"""Finding English prose left in a Japanese text, and environments that choose a language."""

from __future__ import annotations

import os
import re

from wsgate.doctor.diagnosis import CAUSES, UNEXPLAINED
from wsgate.doctor.http_client import PROXY_HEADERS
from wsgate.doctor.model import CHECK_ORDER

# Names that stay as they are in Japanese text: products, a page's own words.
PROPER_NAMES = ("Cloudflare Worker", "Cloud Run", "Google Cloud", "AWS ALB", "Please wait",
                "Switching Protocols", "Bad Gateway", "Gateway Timeout", "Service Unavailable")
IDS = sorted({*CHECK_ORDER, *(c.id for c in CAUSES), UNEXPLAINED.id}, key=len, reverse=True)
TECHNICAL = [
    re.compile(r"\S*python[\d.]* -m wsgate(?: [a-z][a-z-]*)*"),  # a usage line's program
    re.compile(r"^ *(?:[A-Z_]+=\S+ )?(?:wsgate|wrangler|gcloud|cd|kill) .*?(?=#|$)",
               re.M),  # example command lines
    re.compile(r"^ {2}[a-z][a-z0-9-]*(?= {2,})", re.M),  # a command in a help's list
    re.compile(r"`[^`]*`"),  # commands, config lines
    re.compile(r"\b[a-z][a-z0-9+.-]*://\S+"),  # URLs
    re.compile(r"\bwsgate [a-z]+\b"),  # the command a report is headed with
    re.compile(r"\b(?:" + "|".join(map(re.escape, IDS)) + r")\b"),
    re.compile(r"\b[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)+\b"),  # header names, ERR_TOO_MANY_...
    re.compile(r"\b(?:" + "|".join(PROXY_HEADERS) + r"): [^,·)）\n]+"),  # `server: uvicorn`
    re.compile(r"\b[a-z]+=\S+"),  # proto=http, host=..., for=...
    re.compile(r"\bHTTP \d{3}(?: [A-Z][A-Za-z]*)*"),  # a status line and its reason
    re.compile(r"\b\d+(?:\.\d+)? ?ms\b"),  # durations
    re.compile(r"\bGET /\S*"),  # a request line
    re.compile(r"(?<![\w-])--?[a-z][a-z0-9.-]*"),  # options: --secret-env, -h
    re.compile(r"\b[A-Z][A-Z0-9_]+\b"),  # placeholders and variables: URL, HOST:PORT, NO_COLOR
]
# Two ASCII words in a row: a sentence fragment, which Japanese text must not have.
ENGLISH_RUN = re.compile(r"\b[A-Za-z]{2,}(?:[ ,;:'\"]+[A-Za-z]{2,})+\b")


def english_prose(text: str) -> list[str]:
    """Runs of English words left once ids, commands, header names, URLs, product
    names and status lines are taken out."""
    for name in PROPER_NAMES:
        text = text.replace(name, " ")
    for pattern in TECHNICAL:
        text = pattern.sub(" ", text)
    return ENGLISH_RUN.findall(text)


LANGUAGE_VARIABLES = ("WSGATE_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


def environment(**chosen: str) -> dict[str, str]:
    """os.environ without any language setting, plus `chosen` (LANG="ja_JP.UTF-8")."""
    env = {k: v for k, v in os.environ.items() if k not in LANGUAGE_VARIABLES}
    env["LANG"] = "C.UTF-8"
    env.update(chosen)
    return env
