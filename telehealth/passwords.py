"""The password policy every path that sets a password applies (CLI and API).

Length alone lets "password1234" through; zxcvbn (Dropbox's estimator, PyPI) scores how
guessable a password is against common passwords, names, dates, keyboard patterns and the
user's own name, which a home-made list cannot.
"""

from __future__ import annotations

from zxcvbn import zxcvbn

MIN_LENGTH = 12
#: zxcvbn's score 0-4; 3 is "safely unguessable: moderate protection from offline attacks"
MIN_SCORE = 3
#: zxcvbn's own cost grows with length; longer inputs are judged on their first characters
_JUDGED = 100


def password_problem(password: str, *, username: str = "") -> str | None:
    """Why `password` is refused, in words a user can act on, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"a password needs at least {MIN_LENGTH} characters"
    result = zxcvbn(password[:_JUDGED], user_inputs=[username] if username else [])
    if result["score"] >= MIN_SCORE:
        return None
    feedback = result["feedback"]
    hint = " ".join(filter(None, [feedback.get("warning"), *feedback.get("suggestions", [])]))
    return "this password is too easy to guess" + (f": {hint}" if hint else "")
