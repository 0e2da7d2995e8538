"""bcrypt password hashing. Hashing is CPU-bound: callers run it off the event loop."""

from __future__ import annotations

import bcrypt

# bcrypt only reads the first 72 bytes; longer passwords are refused rather than silently cut.
MAX_PASSWORD_BYTES = 72


class PasswordHasher:
    def __init__(self, rounds: int = 12):
        self.rounds = rounds
        # Checked against when the email is unknown, so a miss costs the same time as a hit
        # and response timing does not reveal which accounts exist.
        self._dummy = bcrypt.hashpw(b"deeplens-dummy-password", bcrypt.gensalt(rounds))

    def hash(self, password: str) -> str:
        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(self.rounds)).decode()

    def verify(self, password: str, hashed: str | None) -> bool:
        pw = password.encode()[:MAX_PASSWORD_BYTES]
        if hashed is None:
            bcrypt.checkpw(pw, self._dummy)
            return False
        try:
            return bcrypt.checkpw(pw, hashed.encode())
        except ValueError:
            return False
