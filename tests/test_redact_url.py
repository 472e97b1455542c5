"""redact_url: passwords never reach messages and logs; the rest of the URL stays readable."""

from __future__ import annotations

import pytest

from pyjobqueue.storage.url import open_storage, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://me:pw@host/db", "postgresql://me:***@host/db"),
        ("postgresql://me:p%40ss@host:5432/db", "postgresql://me:***@host:5432/db"),
        ("postgresql://u:p@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("postgresql://me:pw@@host/db", "postgresql://me:***@host/db"),
    ],
)
def test_the_password_of_the_user_part_is_hidden(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://u@127.0.0.1:1/db?password=secret",
            "postgresql://u@127.0.0.1:1/db?password=***",
        ),
        (
            "postgresql://u@h/db?sslmode=require&PASSWORD=secret&application_name=a%20b",
            "postgresql://u@h/db?sslmode=require&PASSWORD=***&application_name=a%20b",
        ),
        ("postgresql://u@h/db?sslpassword=secret#top", "postgresql://u@h/db?sslpassword=***#top"),
        ("postgresql://u@h/db?pass%77ord=secret", "postgresql://u@h/db?pass%77ord=***"),
    ],
)
def test_a_password_query_parameter_is_hidden(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_both_passwords_are_hidden() -> None:
    assert (
        redact_url("postgresql://me:one@host/db?password=two&password=three")
        == "postgresql://me:***@host/db?password=***&password=***"
    )


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://me@host/db",
        "postgresql://host:5432/db?user=a@b&sslmode=disable",
        "postgresql://[::1]:5432/db",
        "postgresql://h/db?password=",
        "postgresql://h/db?password",
        "postgresql://u:@h/db",
        "sqlite:///jobs.db",
        "sqlite:////tmp/a@b.db",
        "sqlite://:memory:",
        "memory://",
        "indexeddb://my%20jobs",
    ],
)
def test_a_url_without_a_password_is_unchanged(url: str) -> None:
    assert redact_url(url) == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # A password with an unescaped "/", "?" or "#" is no valid URL; still hidden.
        ("postgresql://u:se/cret@127.0.0.1:1/db", "postgresql://u:***@127.0.0.1:1/db"),
        ("postgresql://u:se?cret@h/db?x=1", "postgresql://u:***@h/db?x=1"),
        ("postgresql://u:se#cret@h/db", "postgresql://u:***@h/db"),
        # A libpq keyword DSN, not a URL.
        ("host=db password=secret user=me", "host=db password=*** user=me"),
        ("host=db password='se cr\\'et' user=me", "host=db password=*** user=me"),
        ("PASSWORD = secret", "PASSWORD = ***"),
    ],
)
def test_odd_urls_keep_their_secrets(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert "cret" not in shown


@pytest.mark.parametrize(
    "url",
    ["", "://", "a://@", "a://:@", "x:", "postgresql://[bad:pw@h/db", "\x00://\udcff:pw@h", "%zz"],
)
def test_odd_urls_do_not_crash(url: str) -> None:
    shown = redact_url(url)
    assert isinstance(shown, str)
    assert "pw@" not in shown


def test_an_unknown_storage_url_does_not_show_its_password() -> None:
    with pytest.raises(ValueError, match="unknown storage url") as raised:
        open_storage("redis://me:secret@localhost/0?password=secret", "q")
    assert "secret" not in str(raised.value)
    assert "redis://me:***@localhost/0?password=***" in str(raised.value)
