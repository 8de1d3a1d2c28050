"""The base of both APIs' typed views of their JSON: camelCase names as aliases of snake_case
attributes, extra fields ignored, numbers taken as text where text is expected, times in UTC, and
a null list read as empty."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator
from pydantic.alias_generators import to_camel

from joedefender.adapters._microsoft.calls import utc


def none_as_empty(value: object) -> object:
    return [] if value is None else value


class WireModel(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        coerce_numbers_to_str=True,
        frozen=True,
    )

    @field_validator("*", mode="after")
    @classmethod
    def _utc_times(cls, value: Any) -> Any:
        return utc(value) if isinstance(value, datetime) else value


Texts = Annotated[list[str], BeforeValidator(none_as_empty)]
