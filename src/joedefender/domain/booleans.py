"""True or false as people write it in a setting or a JSON parameter: one reading everywhere."""

_ECHO_LIMIT = 80


def parse_boolean(value: object) -> bool:
    """true/false, yes/no, 1/0 (text, case-insensitive, or the values themselves); else
    ValueError with a problem that quotes the value, cut short."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        folded = value.strip().lower()
        if folded in ("true", "1", "yes"):
            return True
        if folded in ("false", "0", "no"):
            return False
        shown = value if len(value) <= _ECHO_LIMIT else value[:_ECHO_LIMIT] + "..."
        raise ValueError(f"{shown!r} is not true or false (use true/false, yes/no or 1/0)")
    raise ValueError("is not true or false")
