"""Device names people recognise ("Chrome on Linux", "Safari on iPhone") from User-Agent strings.

The parsing is ua-parser's (the maintained port of the Browserscope/uap-core rules); this
module only turns its families into the words a shopper uses.
"""

from __future__ import annotations

import functools

from ua_parser import parse

UNKNOWN = "Unknown browser"

# ua-parser tells mobile builds apart; a shopper knows them by the browser's name.
_BROWSERS = {
    "Mobile Safari": "Safari",
    "Mobile Safari UI/WKWebView": "An app",
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "An app",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
    "HeadlessChrome": "Headless Chrome",
    "Opera Mobile": "Opera",
}
_SYSTEMS = {
    "Mac OS X": "Mac",
    "Chrome OS": "ChromeOS",
    "Ubuntu": "Linux",
    "Fedora": "Linux",
    "Debian": "Linux",
    "Linux Mint": "Linux",
}
# On these systems the device ("iPhone", "iPad") is the name people use.
_BY_DEVICE = {"iOS", "iPadOS"}


@functools.lru_cache(maxsize=512)
def device_name(user_agent: str | None) -> str:
    """A short name for the browser and system a User-Agent string describes."""
    if not user_agent:
        return UNKNOWN
    result = parse(user_agent)
    browser = result.user_agent.family if result.user_agent else None
    system = _system(result)
    if browser and browser != "Other":
        browser = _BROWSERS.get(browser, browser)
        return f"{browser} on {system}" if system else browser
    return f"A browser on {system}" if system else UNKNOWN


def _system(result) -> str | None:
    os_family = result.os.family if result.os else None
    if not os_family or os_family == "Other":
        return None
    if os_family in _BY_DEVICE and result.device and result.device.family in ("iPhone", "iPad"):
        return result.device.family
    return _SYSTEMS.get(os_family, os_family)
