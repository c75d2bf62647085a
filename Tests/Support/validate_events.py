#!/usr/bin/env python3
"""Validates JSON-lines events against schema/events.schema.json: validate_events.py SCHEMA FILE.

Prints one line per invalid event and exits 1 if any line is not a valid event.
"""
import json
import sys

import jsonschema

schema = json.load(open(sys.argv[1]))
validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
bad = 0
with open(sys.argv[2]) as lines:
    for number, line in enumerate(lines, 1):
        line = line.rstrip("\n")
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError as error:
            print(f"line {number}: not JSON ({error}): {line[:200]}")
            bad += 1
            continue
        errors = sorted(validator.iter_errors(event), key=str)
        if errors:
            bad += 1
            print(f"line {number}: {errors[0].message}: {line[:200]}")
sys.exit(1 if bad else 0)
