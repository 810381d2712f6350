"""The human/machine classifier of opens and clicks (core/engagement.py) on real-world user
agents and timings: scanners at delivery, image proxies, previews, and people."""

from __future__ import annotations

import pytest

from core.engagement import Engagement, EngagementReason, Fetch, Kind, classify

CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
APPLE_MAIL_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)
ANDROID_CUBOT = (
    "Mozilla/5.0 (Linux; Android 12; CUBOT X30) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Mobile Safari/537.36"
)
OUTLOOK_DESKTOP = (
    "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; WOW64; Trident/7.0; "
    ".NET4.0C; .NET4.0E; Microsoft Outlook 16.0.17328; Microsoft Outlook 16.0.17328; ms-office; "
    "MSOffice 16)"
)
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
APPLE_MPP = "Mozilla/5.0"
BARRACUDA = "Mozilla/5.0 (compatible; Barracuda Sentinel (EE))"
MIMECAST = "Mozilla/5.0 (compatible; Mimecast URL Protect)"
PROOFPOINT = "Mozilla/5.0 (compatible; Proofpoint URL Defense)"
SAFELINKS = "Mozilla/5.0 (compatible; Microsoft Defender for Office 365 SafeLinks)"
OFFICE_DISCOVERY = "Microsoft Office Existence Discovery"
HEADLESS = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/120.0.6099.71 Safari/537.36"
)
SLACK = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

HOME_IP = "203.0.113.7"  # a documentation address: a person at home
EOP_IP = "40.107.22.51"  # Microsoft Exchange Online Protection
PROOFPOINT_IP = "148.163.150.20"
APPLE_IP = "17.58.101.4"

TABLE: list[tuple[str, Kind, str, str | None, str, float | None, int, EngagementReason]] = [
    # label, kind, user agent, address, method, seconds since delivery, links together, reason
    (
        "person clicks in Chrome an hour later",
        "click",
        CHROME_WIN,
        HOME_IP,
        "GET",
        3600,
        1,
        "person",
    ),
    ("person opens on iPhone Safari", "open", SAFARI_IPHONE, HOME_IP, "GET", 900, 1, "person"),
    (
        "person opens in Apple Mail on a Mac",
        "open",
        APPLE_MAIL_MAC,
        HOME_IP,
        "GET",
        120,
        1,
        "person",
    ),
    ("a CUBOT phone is not a bot", "click", ANDROID_CUBOT, HOME_IP, "GET", 400, 1, "person"),
    ("delivery time unknown: a person", "click", CHROME_WIN, HOME_IP, "GET", None, 1, "person"),
    (
        "two links clicked in a row by a person",
        "click",
        CHROME_WIN,
        HOME_IP,
        "GET",
        600,
        2,
        "person",
    ),
    (
        "Gmail shows the images when opened",
        "open",
        GMAIL_PROXY,
        "66.249.84.1",
        "GET",
        5400,
        1,
        "person_via_proxy",
    ),
    (
        "Yahoo shows the images when opened",
        "open",
        YAHOO_PROXY,
        None,
        "GET",
        7200,
        1,
        "person_via_proxy",
    ),
    (
        "Gmail proxy at delivery",
        "open",
        GMAIL_PROXY,
        "66.249.84.1",
        "GET",
        0.8,
        1,
        "prefetch_at_delivery",
    ),
    (
        "Apple MPP fetches the pixel on arrival",
        "open",
        APPLE_MPP,
        APPLE_IP,
        "GET",
        40,
        1,
        "image_proxy",
    ),
    (
        "Apple MPP hours later is still a proxy",
        "open",
        APPLE_MPP,
        None,
        "GET",
        20000,
        1,
        "image_proxy",
    ),
    (
        "an open from Apple's network",
        "open",
        SAFARI_IPHONE,
        APPLE_IP,
        "GET",
        3000,
        1,
        "image_proxy",
    ),
    (
        "a click from Apple's network is a person",
        "click",
        SAFARI_IPHONE,
        APPLE_IP,
        "GET",
        3000,
        1,
        "person",
    ),
    (
        "an image proxy never follows links",
        "click",
        GMAIL_PROXY,
        None,
        "GET",
        3000,
        1,
        "image_proxy",
    ),
    ("Barracuda Sentinel checks the link", "click", BARRACUDA, None, "GET", 2, 1, "scanner_ua"),
    ("Mimecast URL Protect", "click", MIMECAST, None, "GET", 1, 1, "scanner_ua"),
    ("Proofpoint URL Defense", "click", PROOFPOINT, None, "GET", 4, 1, "scanner_ua"),
    ("Safe Links detonation", "click", SAFELINKS, EOP_IP, "GET", 0.03, 1, "scanner_ua"),
    ("Office existence discovery", "click", OFFICE_DISCOVERY, None, "GET", 600, 1, "scanner_ua"),
    (
        "Outlook desktop's own link check",
        "click",
        OUTLOOK_DESKTOP,
        None,
        "GET",
        600,
        1,
        "scanner_ua",
    ),
    ("a scanner HEADs the link first", "click", CHROME_WIN, EOP_IP, "HEAD", 0.5, 1, "head_request"),
    ("a HEAD from anywhere", "click", CHROME_WIN, HOME_IP, "HEAD", 3600, 1, "head_request"),
    (
        "a browser UA from Exchange Online Protection",
        "click",
        CHROME_WIN,
        EOP_IP,
        "GET",
        1.2,
        1,
        "scanner_network",
    ),
    (
        "a browser UA from Proofpoint",
        "open",
        CHROME_WIN,
        PROOFPOINT_IP,
        "GET",
        90,
        1,
        "scanner_network",
    ),
    ("no user agent", "click", "", HOME_IP, "GET", 600, 1, "no_user_agent"),
    ("curl", "click", "curl/8.5.0", HOME_IP, "GET", 600, 1, "bot_ua"),
    ("python-requests", "click", "python-requests/2.31.0", None, "GET", 600, 1, "bot_ua"),
    ("headless Chrome", "click", HEADLESS, None, "GET", 300, 1, "bot_ua"),
    ("Slack unfurls a forwarded link", "click", SLACK, None, "GET", 86400, 1, "bot_ua"),
    ("Googlebot", "click", GOOGLEBOT, None, "GET", 86400, 1, "bot_ua"),
    (
        "every link of the reminder at once",
        "click",
        CHROME_WIN,
        HOME_IP,
        "GET",
        120,
        4,
        "all_links_at_once",
    ),
    (
        "a browser UA clicking 30 ms after delivery",
        "click",
        CHROME_WIN,
        HOME_IP,
        "GET",
        0.03,
        1,
        "prefetch_at_delivery",
    ),
    (
        "an open 2 s after delivery",
        "open",
        SAFARI_IPHONE,
        HOME_IP,
        "GET",
        2,
        1,
        "prefetch_at_delivery",
    ),
    (
        "an open 10 s after delivery is a person",
        "open",
        SAFARI_IPHONE,
        HOME_IP,
        "GET",
        10,
        1,
        "person",
    ),
]


@pytest.mark.parametrize(
    ("label", "kind", "user_agent", "address", "method", "since", "together", "reason"),
    TABLE,
    ids=[row[0] for row in TABLE],
)
def test_engagement_is_classified_by_agent_network_method_and_timing(
    label: str,
    kind: Kind,
    user_agent: str,
    address: str | None,
    method: str,
    since: float | None,
    together: int,
    reason: EngagementReason,
) -> None:
    verdict = classify(
        Fetch(
            kind=kind,
            user_agent=user_agent,
            remote_addr=address,
            method=method,
            seconds_since_delivery=since,
            links_fetched_together=together,
        )
    )
    assert verdict.reason == reason, (label, verdict)
    assert verdict.human == (reason in ("person", "person_via_proxy"))
    assert verdict.human or verdict.detail  # a discounted one says why


def test_every_link_of_a_two_link_email_at_once_is_a_machine() -> None:
    both = Fetch(
        kind="click",
        user_agent=CHROME_WIN,
        seconds_since_delivery=300,
        links_fetched_together=2,
        links_in_send=2,
    )
    one_of_five = Fetch(
        kind="click",
        user_agent=CHROME_WIN,
        seconds_since_delivery=300,
        links_fetched_together=2,
        links_in_send=5,
    )
    assert classify(both).reason == "all_links_at_once"
    assert classify(one_of_five) == Engagement(True, "person", "")


def test_the_scanner_of_the_issue_is_discounted_and_says_why() -> None:
    # Issue 14: a GET of each link of a cart reminder 30 ms after delivery with a scanner's
    # user agent counted as an open and a click.
    verdict = classify(
        Fetch(
            kind="click",
            user_agent=BARRACUDA,
            remote_addr="64.235.150.10",
            seconds_since_delivery=0.03,
            links_fetched_together=3,
        )
    )
    assert verdict == Engagement(False, "scanner_ua", "user agent of Barracuda")


def test_a_malformed_address_is_not_a_network_match() -> None:
    verdict = classify(
        Fetch(kind="open", user_agent=SAFARI_IPHONE, remote_addr="not-an-ip", method="get")
    )
    assert verdict.reason == "person"
