"""What a label key may be (EAS, and Kubernetes, where labels are rendered): letters, digits, '-', '_', '.'
and '/', beginning and ending with a letter or digit, at most 128 characters. Pure.

Checked where labels are set and where ListServices filters by them: a key is data, and even a valid one is
looked up as a literal JSON key (services.selectors.catalog), never spelled into a lookup path."""

import re

MAX_KEY_LENGTH = 128
LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$")


def label_key_problem(key: object) -> str | None:
    if not isinstance(key, str) or not key.strip():
        return "a label key cannot be empty"
    if len(key) > MAX_KEY_LENGTH:
        return f"a label key has at most {MAX_KEY_LENGTH} characters"
    if not LABEL_KEY.match(key):
        return ("a label key holds only letters, digits, '-', '_', '.' and '/', and begins and ends with a letter "
                "or digit")
    return None
