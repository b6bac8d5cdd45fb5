"""Which new passwords are refused: the account's own email, phone or name, and anything zxcvbn (Dropbox's
password strength estimator; its lists include the most common passwords from public breaches) rates as
guessable in under a million tries: `aaaaaaaa`, `password1`, `qwertyuiop`, a name with a year."""

import asyncio

from zxcvbn import zxcvbn

from livehub.errors import ValidationFailed

# zxcvbn scores 0 to 4; 2 and up means about a million guesses or more.
MIN_SCORE = 2
# zxcvbn refuses longer passwords (its matching grows fast with length); a long password's first 72
# characters tell enough.
_ZXCVBN_MAX = 72


def password_problem(password: str, *, email: str, display_name: str, phone: str | None = None) -> str | None:
    """Why `password` may not be used for this account, or None."""
    own = [email, email.split("@")[0], display_name, *([phone] if phone else [])]
    folded = password.casefold().strip()
    if any(folded == value.casefold().strip() for value in own):
        return "the password must not be your email, phone or name"
    result = zxcvbn(password[:_ZXCVBN_MAX], user_inputs=own)
    if result["score"] >= MIN_SCORE:
        return None
    feedback = result["feedback"]
    why = " ".join(filter(None, [feedback.get("warning"), *feedback.get("suggestions", [])]))
    return f"this password is too easy to guess. {why}".strip()


async def check_new_password(password: str, *, email: str, display_name: str, phone: str | None = None) -> None:
    """ValidationFailed (on the `password` field, saying why) for a password `password_problem` refuses."""
    # A few tens of milliseconds of CPU: off the event loop.
    problem = await asyncio.to_thread(password_problem, password, email=email, display_name=display_name, phone=phone)
    if problem is not None:
        raise ValidationFailed(
            problem, {"errors": [{"loc": ["password"], "msg": problem, "type": "password_too_weak"}]}
        )
