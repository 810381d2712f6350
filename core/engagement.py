"""Is an open or a click a person's? One pure function, ``classify``, and its rules.

Machines open and click too: mail-security gateways (Microsoft Defender for Office 365 Safe
Links, Proofpoint URL Defense, Mimecast, Barracuda, ...) fetch every link of a message within
moments of delivery, often with a HEAD first; Apple Mail Privacy Protection fetches every
image of every message through Apple's proxies whether or not anyone reads it; link
previewers and scripts fetch what they are given. A journey that branches on such a fetch
skips reminders "because they clicked". So every open and click is classified once, here,
and only the human ones may count for decisions, sunsets and rates (the machine ones are
kept, with their reason, for reports and ``explain``).

The rules, first match wins:

1. ``head_request``: not a GET (people's mail clients and browsers GET; scanners HEAD).
2. ``no_user_agent``: no user agent at all.
3. ``scanner_ua``: a mail-security or link-checking agent by name (``SCANNER_AGENTS``).
4. ``bot_ua``: a script, library, crawler, headless browser or chat link preview.
5. ``scanner_network``: from a mail-security vendor's published network (``NETWORKS``).
6. ``image_proxy``: an open through a proxy that fetches at delivery whether or not the
   person reads it (Apple Mail Privacy Protection), or any proxy fetch at delivery, or a
   *click* from an image proxy's agent (they fetch images, never follow links).
7. ``all_links_at_once``: a click when several links of the same send were fetched within
   ``BURST_SECONDS`` (a person follows one link, not every link in a second).
8. ``prefetch_at_delivery``: fetched sooner after delivery than a person reads
   (``OPEN_PREFETCH_SECONDS`` / ``CLICK_PREFETCH_SECONDS``).
9. otherwise human: ``person``, or ``person_via_proxy`` for an open through a proxy that
   fetches when the message is shown (Gmail's GoogleImageProxy, Yahoo's):
   that fetch is the person opening it.

An open or click that is not a fetch of our tracking links (the shop's own "Email Opened"
through the API, from its mail provider) has nothing to judge: ``reported``, taken as the
sender says (``as_reported``). Opens and clicks recorded before classification existed are
``unclassified`` (migration 0010) and were counted as people's.

Why these thresholds (docs/decisions/0009-human-engagement.md): scanners fetch within a
second or two of delivery; a person needs longer than 5 s to see a new message and open
it, longer than 15 s to read it and follow a link; a person follows one or two links, a
scanner every link in the same second.

Keep the tables current from the vendors' documentation; the test table
(tests/test_engagement_rules.py) holds real agents and timings.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["open", "click"]
MachineReason = Literal[
    "head_request",
    "no_user_agent",
    "scanner_ua",
    "bot_ua",
    "scanner_network",
    "image_proxy",
    "all_links_at_once",
    "prefetch_at_delivery",
]
HumanReason = Literal["person", "person_via_proxy", "reported", "unclassified"]
EngagementReason = MachineReason | HumanReason
# The two classes as the store keeps them (``events.engagement_class``).
EngagementClass = Literal["human", "machine"]
HUMAN: EngagementClass = "human"
MACHINE: EngagementClass = "machine"

# A person opens a message later than this after delivery, and clicks later than this.
OPEN_PREFETCH_SECONDS = 5.0
CLICK_PREFETCH_SECONDS = 15.0
# Clicks of one send within this window count as fetched together; this many distinct
# links together (or every link of the send, if it has two or more) is a machine.
BURST_SECONDS = 10.0
BURST_LINKS = 3


@dataclass(frozen=True)
class Agent:
    """A user agent known by a fragment of its string (case-insensitive)."""

    name: str
    pattern: str

    def matches(self, user_agent: str) -> bool:
        return re.search(self.pattern, user_agent, re.IGNORECASE) is not None


# Mail-security gateways and link checkers that say who they are.
SCANNER_AGENTS = (
    Agent("Microsoft Defender for Office 365 / Safe Links", r"safelinks|\bdefender\b"),
    Agent("Microsoft Office link check", r"ms-office|microsoft office existence discovery"),
    Agent("Barracuda", r"barracuda"),
    Agent("Proofpoint", r"proofpoint|\bpphosted\b|urldefense"),
    Agent("Mimecast", r"mimecast"),
    Agent("Cisco Secure Email (IronPort)", r"ironport"),
    Agent("Symantec / Broadcom Email Security", r"messagelabs|symantec"),
    Agent("Trend Micro", r"trend ?micro"),
    Agent("Sophos", r"sophos"),
    Agent("Forcepoint", r"forcepoint|websense"),
    Agent("Zscaler", r"zscaler"),
    Agent("Trustwave / MailMarshal", r"trustwave|mailmarshal"),
    Agent("Check Point", r"check ?point"),
    Agent("FireEye / Trellix", r"fireeye|trellix"),
    Agent("Hornetsecurity", r"hornetsecurity"),
    Agent("Vade", r"\bvade\b|vadesecure"),
    Agent("SpamTitan", r"spamtitan"),
)
# Scripts, libraries, crawlers, headless browsers and chat link previews.
BOT_AGENTS = (
    Agent(
        "HTTP library or tool",
        r"^(curl|wget|python|go-http-client|java/|okhttp|axios|node-fetch|libwww"
        r"|apache-httpclient|httpx|aiohttp|ruby|php)",
    ),
    Agent("headless browser", r"headlesschrome|phantomjs|puppeteer|playwright|selenium"),
    # "Googlebot/2.1", "bingbot/2.0", a bare "bot"; not a phone named "CUBOT X30"
    Agent("crawler", r"\bbot\b|[a-z]bot/|crawler|spider|slurp"),
    Agent(
        "link preview",
        r"facebookexternalhit|slackbot|whatsapp|telegrambot|discordbot|skypeuripreview"
        r"|linkedinbot|twitterbot",
    ),
)


@dataclass(frozen=True)
class Proxy(Agent):
    """A mailbox provider's image proxy. ``at_delivery``: it fetches every image when the
    message arrives, whether or not anyone reads it (never a person's open); otherwise it
    fetches when the message is shown (a person's open, unless it happens at delivery)."""

    at_delivery: bool = False


IMAGE_PROXIES = (
    # "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
    Proxy("Gmail image proxy", r"googleimageproxy|via ggpht\.com"),
    # "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
    Proxy("Yahoo Mail proxy", r"yahoomailproxy"),
    # Mail Privacy Protection: a bare "Mozilla/5.0" (the proxy sends nothing else).
    Proxy("Apple Mail Privacy Protection", r"^Mozilla/5\.0$", at_delivery=True),
)


@dataclass(frozen=True)
class Network:
    name: str
    cidrs: tuple[str, ...]
    opens_only: bool = False  # an image proxy's network: a click from it may be a person

    def contains(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in ipaddress.ip_network(cidr) for cidr in self.cidrs)


# Mail-security vendors' published mail-gateway ranges (their link scanners fetch from
# them); Apple's own network for Mail Privacy Protection's image fetches.
NETWORKS = (
    Network(
        "Microsoft Exchange Online Protection",
        ("40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17"),
    ),
    Network("Proofpoint", ("67.231.144.0/20", "148.163.128.0/19")),
    Network("Mimecast", ("205.139.110.0/24", "207.211.30.0/24")),
    Network("Barracuda", ("64.235.144.0/20", "209.222.80.0/21")),
    Network("Apple Mail Privacy Protection", ("17.0.0.0/8",), opens_only=True),
)


@dataclass(frozen=True)
class Fetch:
    """What the tracking route knows about one request for a pixel or a tracked link."""

    kind: Kind
    user_agent: str | None
    remote_addr: str | None = None
    method: str = "GET"
    seconds_since_delivery: float | None = None  # None: the send's delivery time unknown
    # Distinct links of the same send fetched within BURST_SECONDS of this one, this one
    # included (clicks only; 1 for a lone click).
    links_fetched_together: int = 1
    links_in_send: int | None = None  # tracked links the send has, when known


@dataclass(frozen=True)
class Engagement:
    human: bool
    reason: EngagementReason
    detail: str  # for people: which agent, network or timing decided

    @property
    def engagement_class(self) -> EngagementClass:
        return HUMAN if self.human else MACHINE


def as_reported(kind: Kind) -> Engagement:
    """An open or click the sender reports (no fetch of ours to judge): a person's."""
    return Engagement(True, "reported", f"{kind} reported by the sender, not a fetch of ours")


def classify(fetch: Fetch) -> Engagement:
    """Human or machine, with the rule that decided (module docstring, in order)."""
    ua = (fetch.user_agent or "").strip()
    if fetch.method.upper() != "GET":
        return _machine("head_request", f"{fetch.method.upper()} request, not a person's GET")
    if not ua:
        return _machine("no_user_agent", "no user agent")
    for agent in SCANNER_AGENTS:
        if agent.matches(ua):
            return _machine("scanner_ua", f"user agent of {agent.name}")
    for agent in BOT_AGENTS:
        if agent.matches(ua):
            return _machine("bot_ua", f"user agent of a {agent.name}")
    for net in NETWORKS:
        if fetch.remote_addr and net.contains(fetch.remote_addr):
            if not net.opens_only:
                return _machine("scanner_network", f"from {net.name}'s network")
            if fetch.kind == "open":
                return _machine("image_proxy", f"from {net.name}'s network")
    proxy = next((p for p in IMAGE_PROXIES if p.matches(ua)), None)
    if proxy is not None and (fetch.kind == "click" or proxy.at_delivery):
        why = "fetches every image at delivery" if proxy.at_delivery else "follows no links"
        return _machine("image_proxy", f"{proxy.name} ({why})")
    if fetch.kind == "click" and _burst(fetch):
        return _machine(
            "all_links_at_once",
            f"{fetch.links_fetched_together} links of this email within {BURST_SECONDS:g} s",
        )
    limit = OPEN_PREFETCH_SECONDS if fetch.kind == "open" else CLICK_PREFETCH_SECONDS
    since = fetch.seconds_since_delivery
    if since is not None and since < limit:
        via = f" through {proxy.name}" if proxy is not None else ""
        return _machine("prefetch_at_delivery", f"{fetch.kind} {since:.1f} s after delivery{via}")
    if proxy is not None:
        return Engagement(True, "person_via_proxy", f"opened in the mailbox ({proxy.name})")
    return Engagement(True, "person", "")


def _burst(fetch: Fetch) -> bool:
    together = fetch.links_fetched_together
    if together >= BURST_LINKS:
        return True
    return (
        fetch.links_in_send is not None
        and fetch.links_in_send >= 2
        and (together >= fetch.links_in_send)
    )


def _machine(reason: MachineReason, detail: str) -> Engagement:
    return Engagement(False, reason, detail)
