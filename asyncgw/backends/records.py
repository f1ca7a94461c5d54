"""Conversion between ``Record`` and the flat documents/rows the status stores keep."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from asyncgw.schema import RECORD_FIELDS, Record, Status


def to_document(record: Record) -> dict[str, Any]:
    """The record's fields that are set, ``id`` named ``_id``."""
    doc: dict[str, Any] = {"_id": record.id}
    for name in RECORD_FIELDS:
        if name == "id":
            continue
        value = getattr(record, name)
        if value is not None:
            doc[name] = value.value if isinstance(value, Status) else value
    return doc


def from_document(doc: Mapping[str, Any]) -> Record:
    """The record in a document written by ``to_document`` (unknown keys are ignored)."""
    values = {k: v for k, v in doc.items() if k in RECORD_FIELDS}
    values["id"] = doc["_id"]
    values["status"] = Status(doc["status"])
    for name, value in values.items():
        if isinstance(value, datetime) and value.tzinfo is None:
            values[name] = value.replace(tzinfo=UTC)
    return Record(**values)
