"""FHIR R4 shapes of what the stream stores: pure functions from rows to FHIR JSON, no HTTP.

`base` holds the systems and helpers, `resources` Patient, Device, Observation and the
CapabilityStatement, `search` the search parameters' parsing, `cgm` the HL7 CGM IG (STU 1)
summary and submission bundle. Resources are validated with `fhir.resources` (its R4B models,
which for these resources are R4's); see docs/fhir.md.
"""
