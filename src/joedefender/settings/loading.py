"""From a mapping of names to texts (app settings, environment variables, a settings file) to the
model's input, and from pydantic's errors to (setting, problem) pairs named as the user wrote them.

Works on any pydantic model whose fields carry their external names as validation aliases, so the
model can call it without this module importing the model.
"""

from collections.abc import Mapping

from pydantic import BaseModel, ValidationError


def external_names(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> the setting's external name (its validation alias)."""
    names = {}
    for field_name, field in model.model_fields.items():
        alias = field.validation_alias
        assert isinstance(alias, str), field_name
        names[field_name] = alias
    return names


def gather(values: Mapping[str, str], names: Mapping[str, str]) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Pick our settings (`names`: folded name -> external name) out of a mapping, by exact name or
    else by a unique case-folded match.

    Windows and some hosts fold the case of environment names, so an exact match cannot be required.
    """
    exact: dict[str, str] = {}
    variants: dict[str, dict[str, str]] = {}
    for key, value in values.items():
        name = names.get(key.lower())
        if name is None or not isinstance(value, str) or not value.strip():
            continue
        if key == name:
            exact[name] = value
        else:
            variants.setdefault(name, {})[key] = value
    problems = []
    for name, spellings in variants.items():
        if name in exact:
            continue
        if len(spellings) == 1:
            exact[name] = next(iter(spellings.values()))
        else:
            listed = ", ".join(sorted(spellings))
            problems.append((name, f"set more than once under different spellings ({listed}); keep one"))
    return exact, problems


def problems_of(exc: ValidationError, names: Mapping[str, str]) -> list[tuple[str, str]]:
    """(setting, problem) for each of pydantic's errors; `names`: field name -> external name."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        location = error["loc"]
        head = str(location[0]) if location else "Settings"
        setting = names.get(head, head)
        if error["type"] == "missing":
            problem = "missing"
        elif error["type"] == "value_error" and "error" in error.get("ctx", {}):
            problem = str(error["ctx"]["error"])
        else:
            problem = error["msg"]
        if len(location) > 1:
            problem = f"{'.'.join(str(part) for part in location[1:])}: {problem}"
        problems.append((setting, problem))
    return problems


def merge(first: list[tuple[str, str]], second: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A setting with a spelling problem is also 'missing' to pydantic; keep only the clearer one."""
    named = {setting for setting, _ in first}
    return first + [(setting, problem) for setting, problem in second if setting not in named]
