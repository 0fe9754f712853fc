"""Device names in the words people use, from real User-Agent strings."""

from __future__ import annotations

import pytest

from myapp.devices import UNKNOWN, device_name

AGENTS = {
    "Chrome on Linux": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Safari on iPhone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) "
    "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Safari on iPad": "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Chrome on iPhone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) "
    "AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/126.0.6478.54 Mobile/15E148 Safari/604.1",
    "Safari on Mac": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Edge on Windows": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0",
    "Firefox on Windows": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 "
    "Firefox/127.0",
    "Firefox on Linux": "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:127.0) Gecko/20100101 "
    "Firefox/127.0",
    "Chrome on Android": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
    "Samsung Internet on Android": "Mozilla/5.0 (Linux; Android 14; SM-S918B) "
    "AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/25.0 Chrome/121.0.0.0 "
    "Mobile Safari/537.36",
    "Headless Chrome on Linux": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36",
}


@pytest.mark.parametrize(("expected", "agent"), AGENTS.items())
def test_browsers_are_named_by_browser_and_device(expected, agent):
    assert device_name(agent) == expected


def test_a_program_without_a_system_is_named_alone():
    assert device_name("curl/8.5.0") == "curl"


def test_a_known_system_with_an_unknown_browser_names_the_system():
    assert device_name("Mozilla/5.0 (compatible; Windows NT 10.0)") == "A browser on Windows"


@pytest.mark.parametrize("agent", [None, "", "Second device", "x" * 256])
def test_nothing_recognisable_is_an_unknown_browser(agent):
    assert device_name(agent) == UNKNOWN
