"""Log lines carry the fields that let one reading be followed across processes."""

import json
import logging

from telehealth import logs


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("processor.service", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_bound_and_passed_fields() -> None:
    formatter = logs.JsonFormatter("processor")
    with logs.context(batch_id="telehealth.readings:2:40+7"):
        line = json.loads(formatter.format(_record("stored", device_id="cgm-1", seq=42)))
    assert line["service"] == "processor" and line["message"] == "stored"
    assert (line["batch_id"], line["device_id"], line["seq"]) == ("telehealth.readings:2:40+7", "cgm-1", 42)
    after = json.loads(formatter.format(_record("idle")))
    assert "batch_id" not in after, "the context ends with its block"


def test_text_lines_show_the_fields_after_the_message() -> None:
    formatter = logs.TextFormatter("gateway")
    with logs.context(device_id="oxi-7"), logs.context(seq=3):
        text = formatter.format(_record("dead letter"))
    assert text.endswith("dead letter [device_id=oxi-7 seq=3]"), text
    assert "[" not in formatter.format(_record("plain"))
