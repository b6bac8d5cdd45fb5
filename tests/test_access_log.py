"""What the access log keeps of a URL (the node's log itself is checked in test_run.py)."""

import pytest

from livehub.api.access_log import redact_query


@pytest.mark.parametrize(
    "url, shown",
    [
        ("/ws/streams/1?token=abc&since=5", "/ws/streams/1?token=[redacted]&since=5"),
        ("/x?%74oken=abc", "/x?%74oken=[redacted]"),  # aiohttp decodes the name: it is a token
        ("/x?TOKEN=a&Api-Key=b&refresh%5Ftoken=c", "/x?TOKEN=[redacted]&Api-Key=[redacted]&refresh%5Ftoken=[redacted]"),
        (
            "/x?new+password=a&otp_code=b&client_secret=c",
            "/x?new+password=[redacted]&otp_code=[redacted]&client_secret=[redacted]",
        ),
        ("https://a.example/p?next=/watch&sig=1#token=z", "https://a.example/p?next=/watch&sig=1#token=z"),
        ("/x?q=token%3Dabc&limit=5", "/x?q=token%3Dabc&limit=5"),
        ("/x?token", "/x?token"),
        ("/plain/path", "/plain/path"),
    ],
)
def test_secret_named_parameters_lose_their_values(url, shown):
    assert redact_query(url) == shown
