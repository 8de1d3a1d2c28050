"""Settings files: a dotenv file, or an Azure Functions local.settings.json. Values are never
echoed in an error: a line may be a secret pasted without its name."""

import json
import re
from pathlib import Path

from joedefender.settings.errors import SettingsError

_DOTENV_LINE = re.compile(r"\s*(?:export\s+)?(?P<key>[A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(?P<value>.*?)\s*")
_DOUBLE_QUOTE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def read_settings_file(path: Path) -> dict[str, str]:
    """Read a dotenv file or an Azure Functions local.settings.json; values are never echoed."""
    where = f"settings file {path}"
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise SettingsError([(where, "does not exist")]) from None
    except IsADirectoryError:
        raise SettingsError([(where, "is a directory")]) from None
    except UnicodeDecodeError:
        raise SettingsError([(where, "is not UTF-8 text")]) from None
    except OSError as exc:
        raise SettingsError([(where, f"cannot be read ({exc.strerror})")]) from None
    if Path(path).suffix.lower() == ".json" or text.lstrip().startswith("{"):
        return _read_local_settings_json(text, where)
    return _read_dotenv(text, where)


def _read_local_settings_json(text: str, where: str) -> dict[str, str]:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        problem = f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        raise SettingsError([(where, problem)]) from None
    if not isinstance(document, dict) or not isinstance(document.get("Values"), dict):
        problem = 'is JSON but not an Azure Functions local.settings.json (no "Values" object)'
        raise SettingsError([(where, problem)])
    return {str(key): _json_setting(value) for key, value in document["Values"].items()}


def _json_setting(value: object) -> str:
    """Settings are text; JSON scalars and lists are turned back into the text a user would write."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def _read_dotenv(text: str, where: str) -> dict[str, str]:
    values = {}
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _DOTENV_LINE.fullmatch(line)
        if match is None:  # the line is not shown: it may be a secret pasted without a name
            problems.append((where, f"line {number} is not KEY=VALUE"))
            continue
        try:
            values[match["key"]] = _dotenv_value(match["value"])
        except ValueError as exc:
            problems.append((where, f"line {number}: {exc}"))
    if problems:
        raise SettingsError(problems)
    return values


def _dotenv_value(raw: str) -> str:
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = _closing_quote(raw, quote)
        rest = raw[end + 1 :].strip()
        if rest and not rest.startswith("#"):
            raise ValueError("unexpected text after the closing quote")
        inner = raw[1:end]
        return _unescape(inner) if quote == '"' else inner
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def _closing_quote(raw: str, quote: str) -> int:
    index = 1
    while index < len(raw):
        if raw[index] == "\\" and quote == '"':
            index += 2
            continue
        if raw[index] == quote:
            return index
        index += 1
    raise ValueError("the quote is not closed on the same line")


def _unescape(inner: str) -> str:
    return re.sub(r"\\(.)", _unescape_one, inner)


def _unescape_one(match: re.Match[str]) -> str:
    return _DOUBLE_QUOTE_ESCAPES.get(match[1], match[0])
