"""Generated secrets are pasted after command-line options (`--token X`): none may start with
"-", which argparse would take for an option (one plain `token_urlsafe` in 64 does)."""

from telehealth.broker.logins import ServiceLogins
from telehealth.security import new_device_secret, new_token, url_safe_secret


def test_no_generated_secret_starts_with_a_dash() -> None:
    # With 1 in 64 starting with "-", 3,000 draws of a plain generator hold one with
    # probability 1 - (63/64)**3000, all but certain.
    drawn = [new_token() for _ in range(1000)] + [new_device_secret() for _ in range(1000)]
    drawn += [url_safe_secret(9) for _ in range(700)]
    for _ in range(100):
        logins = ServiceLogins.generate()
        drawn += [logins.admin, logins.gateway, logins.relay]
    assert not [s for s in drawn if s.startswith("-")]
    assert len(set(drawn)) == len(drawn)  # still random
