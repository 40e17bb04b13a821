"""JSONL export/import: deterministic text, exact round trip, idempotent, all-or-nothing validation."""

from __future__ import annotations

import json

import pytest
from db_testdata import H100

from slagen.db import FORMAT_VERSION, JsonlFormatError, TuningStore


def _lines(path):
    return path.read_text().splitlines()


def _rewrite_line(path, number, edit):
    """Apply `edit` to the JSON object on line `number` (1-based) and write the file back."""
    lines = _lines(path)
    data = json.loads(lines[number - 1])
    edit(data)
    lines[number - 1] = json.dumps(data)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def exported(store, trials, tmp_path):
    trials.fill(store, 30)
    path = tmp_path / "tuning.jsonl"
    assert store.export_jsonl(path) == 30
    return path


def test_export_has_a_header_then_one_object_per_line(exported):
    lines = _lines(exported)
    header = json.loads(lines[0])
    assert header == {"format": "slagen-tuning-jsonl", "format_version": FORMAT_VERSION, "schema_version": 3}
    kinds = [json.loads(line)["type"] for line in lines[1:]]
    assert kinds == ["variant"] * 2 + ["trial"] * 30


def test_round_trip_equals_the_original(store, exported, new_db_url, tmp_path):
    with TuningStore(new_db_url("copy")) as copy:
        result = copy.import_jsonl(exported)
        assert (result.trials_read, result.trials_added, result.trials_duplicate) == (30, 30, 0)
        assert copy.trials() == store.trials()
        assert copy.best_configs() == store.best_configs()
        assert copy.variant_specs() == store.variant_specs()
        again = tmp_path / "again.jsonl"
        copy.export_jsonl(again)
    assert again.read_bytes() == exported.read_bytes()


def test_reimport_is_idempotent(store, exported):
    before = store.info()
    result = store.import_jsonl(exported)
    assert (result.trials_added, result.trials_duplicate) == (0, 30)
    assert store.info() == before


def test_export_order_does_not_depend_on_insertion_order(new_db_url, trials, tmp_path):
    records = [trials.kwargs(config={"i": i}, median_ms=1 + (i * 7) % 5) for i in range(12)]
    paths = []
    for name, order in (("fwd", records), ("rev", records[::-1])):
        with TuningStore(new_db_url(name)) as store:
            for kwargs in order:
                store.record_trial(**kwargs)
            paths.append(tmp_path / f"{name}.jsonl")
            store.export_jsonl(paths[-1])
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_export_of_one_gpu(store, trials, tmp_path):
    trials.fill(store, 12)
    path = tmp_path / "h100.jsonl"
    assert store.export_jsonl(path, device_name=H100.name) == len(store.trials(device_name=H100.name))
    names = {json.loads(line)["device"]["name"] for line in _lines(path)[1:] if '"trial"' in line}
    assert names == {H100.name}


def test_non_finite_numbers_travel_as_strings(store, trials, tmp_path, new_db_url):
    trials.record(store, status="mismatch", median_ms=0.2, max_error=float("inf"))
    trials.record(store, status="mismatch", median_ms=0.3, max_error=float("nan"))
    path = tmp_path / "nonfinite.jsonl"
    store.export_jsonl(path)
    assert path.read_text().count('"max_error": "Infinity"') == 2  # NaN error means unbounded
    with TuningStore(new_db_url("copy")) as copy:
        copy.import_jsonl(path)
        assert copy.trials() == store.trials()
        assert [repr(t.max_error) for t in copy.trials()] == ["inf", "inf"]


def _assert_rejected(store_url_store, path, line, message):
    before = store_url_store.info()
    with pytest.raises(JsonlFormatError) as caught:
        store_url_store.import_jsonl(path)
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert message in str(caught.value)
    assert store_url_store.info() == before


@pytest.fixture
def empty_store(new_db_url):
    with TuningStore(new_db_url("target")) as store:
        yield store


def test_a_corrupt_line_is_reported_and_nothing_imported(exported, empty_store):
    lines = _lines(exported)
    lines[20] = lines[20][: len(lines[20]) // 2]  # a truncated write
    exported.write_text("\n".join(lines) + "\n")
    _assert_rejected(empty_store, exported, 21, "not valid JSON")
    assert empty_store.info().trials == 0


def test_a_wrong_typed_field_is_reported_with_its_line(exported, empty_store):
    _rewrite_line(exported, 30, lambda d: d.update(n_repeats="25"))
    _assert_rejected(empty_store, exported, 30, "n_repeats: expected an integer >= 0, got '25'")


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(status="great"), "status: expected one of"),
    (lambda d: d["device"].update(sm_count=None), "device.sm_count: expected an integer >= 0"),
    (lambda d: d["device"].pop("driver_version"), "device.driver_version: missing"),
    (lambda d: d.update(config="BT=64"), "config: expected a JSON object"),
    (lambda d: d.update(created_at="yesterday"), "created_at: expected an ISO 8601"),
    (lambda d: d.update(colour="blue"), "colour: unknown field"),
    (lambda d: d.update(type="trail"), "type: expected \"variant\" or \"trial\""),
    (lambda d: d.update(trial_uid="xyz"), "trial_uid: expected 64 lowercase hex digits"),
    (lambda d: d.update(median_ms=d["median_ms"] + 1 if isinstance(d["median_ms"], float) else 1.0),
     "does not match the trial's content"),
    (lambda d: d.update(spec_hash="ffff0000ffff0000", trial_uid=""),
     "spec_hash: no variant line for 'ffff0000ffff0000'"),
])
def test_each_bad_field_is_reported_and_nothing_imported(exported, empty_store, edit, message):
    _rewrite_line(exported, 25, edit)
    _assert_rejected(empty_store, exported, 25, message)


def test_nan_literals_are_refused(exported, empty_store):
    lines = _lines(exported)
    lines[9] = lines[9].replace('"max_error": 0.001', '"max_error": NaN')
    assert "NaN" in lines[9]
    exported.write_text("\n".join(lines) + "\n")
    _assert_rejected(empty_store, exported, 10, 'NaN is not JSON (write it as the string "NaN")')


def test_a_header_from_a_newer_format_is_refused(exported, empty_store):
    _rewrite_line(exported, 1, lambda d: d.update(format_version=FORMAT_VERSION + 1))
    _assert_rejected(empty_store, exported, 1, f"format version {FORMAT_VERSION + 1} by a newer slagen")


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ('{"type": "trial"}\n', 'expected a header line with "format": "slagen-tuning-jsonl"'),
    ('{"format": "slagen-tuning-jsonl", "format_version": "1"}\n', "format_version: expected an integer"),
])
def test_a_bad_header_is_refused(tmp_path, empty_store, text, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    _assert_rejected(empty_store, path, 1, message)


def test_a_trial_uid_may_be_left_out_and_is_recomputed(exported, empty_store, store):
    _rewrite_line(exported, 5, lambda d: d.pop("trial_uid"))
    empty_store.import_jsonl(exported)
    assert empty_store.trials() == store.trials()
