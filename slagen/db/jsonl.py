"""The JSONL exchange format: a header line, then one JSON object per line (variants, then trials).

```
{"format": "slagen-tuning-jsonl", "format_version": 1, "schema_version": 3}
{"spec": {...}, "spec_hash": "...", "type": "variant"}
{"config": {...}, "created_at": "...Z", "device": {...}, ..., "trial_uid": "...", "type": "trial"}
```

Order is deterministic (variants by hash, trials by kernel, device, bucket, dtype, time, uid) and keys
are sorted, so files from the same data are byte-identical and diff well. Reading validates the whole
file before anything is returned: the first bad line raises with the file name and line number.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import JsonlFormatError, RecordError
from .records import TrialRecord, check_json_object, check_spec_hash, check_token

FORMAT_NAME = "slagen-tuning-jsonl"
FORMAT_VERSION = 1


@dataclass
class TuningFile:
    """The validated content of a JSONL file."""

    path: str
    format_version: int
    schema_version: int | None
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    trials: list[TrialRecord] = field(default_factory=list)
    lines: int = 0


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False)


def write_tuning_file(
    path: str | os.PathLike, variants: Mapping[str, Mapping[str, Any]], trials: Iterable[TrialRecord],
    *, schema_version: int,
) -> int:
    """Write atomically (a temp file renamed into place); returns the number of trial lines."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(trials, key=TrialRecord.sort_key)
    used = {record.kernel.spec_hash for record in ordered}
    temp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "w", encoding="utf-8", newline="\n") as out:
            header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "schema_version": schema_version}
            out.write(_dumps(header) + "\n")
            for spec_hash in sorted(used):
                out.write(_dumps({"type": "variant", "spec_hash": spec_hash, "spec": dict(variants[spec_hash])}) + "\n")
            for record in ordered:
                out.write(_dumps({"type": "trial", **record.to_json_dict()}) + "\n")
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)
    return len(ordered)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (write it as the string \"{name}\")")


MAX_LINE_CHARS = 1_000_000  # a trial line is a few hundred characters


def _parse_line(text: str) -> Any:
    if len(text) > MAX_LINE_CHARS:
        raise ValueError(f"line of {len(text)} characters; a tuning record is under {MAX_LINE_CHARS}")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _read_header(where: str, text: str | None) -> tuple[int, int | None]:
    if text is None:
        raise JsonlFormatError(where, 1, f"empty file; expected a header line {{\"format\": \"{FORMAT_NAME}\", ...}}")
    try:
        header = _parse_line(text)
    except ValueError as err:
        raise JsonlFormatError(where, 1, f"header is not valid JSON ({err})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise JsonlFormatError(
            where, 1, f"expected a header line with \"format\": \"{FORMAT_NAME}\", got {text.strip()[:120]}")
    version = header.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise JsonlFormatError(where, 1, f"format_version: expected an integer >= 1, got {version!r}")
    if version > FORMAT_VERSION:
        raise JsonlFormatError(
            where, 1, f"written in format version {version} by a newer slagen; this slagen reads format version "
                      f"{FORMAT_VERSION}: upgrade slagen to import it")
    schema_version = header.get("schema_version")
    if schema_version is not None and (isinstance(schema_version, bool) or not isinstance(schema_version, int)):
        raise JsonlFormatError(where, 1, f"schema_version: expected an integer, got {schema_version!r}")
    return version, schema_version


def _read_variant(data: dict[str, Any], variants: dict[str, dict[str, Any]]) -> None:
    unknown = sorted(set(data) - {"type", "spec_hash", "spec"})
    if unknown:
        raise RecordError(unknown[0], "unknown field in a variant line; allowed: type, spec_hash, spec")
    spec_hash = check_token("hash", "spec_hash", data.get("spec_hash"))
    spec = check_json_object("spec", data.get("spec"))
    check_spec_hash(spec_hash, spec)
    if spec_hash in variants and variants[spec_hash] != spec:
        raise RecordError("spec", f"variant {spec_hash} appears twice with different specs")
    variants[spec_hash] = spec


def read_tuning_file(path: str | os.PathLike) -> TuningFile:
    """Parse and validate every line; raise `JsonlFormatError` at the first bad one."""
    where = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().split("\n")
    except UnicodeDecodeError as err:
        raise JsonlFormatError(where, 1, f"not UTF-8 text ({err})") from None
    format_version, schema_version = _read_header(where, lines[0] if lines[0].strip() else None)
    result = TuningFile(where, format_version, schema_version)
    trial_lines: list[int] = []
    for number, text in enumerate(lines[1:], start=2):
        if not text.strip():
            continue
        try:
            data = _parse_line(text)
        except ValueError as err:
            raise JsonlFormatError(where, number, f"not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise JsonlFormatError(where, number, f"expected a JSON object, got {type(data).__name__}")
        try:
            if data.get("type") == "variant":
                _read_variant(data, result.variants)
            elif data.get("type") == "trial":
                result.trials.append(TrialRecord.from_json_dict(data))
                trial_lines.append(number)
            else:
                raise RecordError("type", f"expected \"variant\" or \"trial\", got {data.get('type')!r}")
        except RecordError as err:
            raise JsonlFormatError(where, number, str(err)) from None
    for number, record in zip(trial_lines, result.trials):
        if record.kernel.spec_hash not in result.variants:
            raise JsonlFormatError(
                where, number, f"spec_hash: no variant line for {record.kernel.spec_hash!r} in this file")
    result.lines = len([text for text in lines if text.strip()])
    return result
