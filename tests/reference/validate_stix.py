#!/usr/bin/env python3
"""Validate STIX 2.1 bundles written by Tocsin with the OASIS validator (PyPI `stix2-validator`).

Tocsin renders early warnings as STIX 2.1 bundles (`tocsin_correlate::stix::to_bundle`). Its own
tests check the structure it means to produce; this script asks an independent implementation,
the OASIS TC's reference validator, whether the result is valid STIX 2.1, so that a bundle which
only Tocsin believes in does not reach OpenCTI or a TAXII server. The Rust test
`stix_bundle_passes_the_oasis_validator` (crates/tocsin-correlate/tests/render.rs) runs it when
TOCSIN_STIX_VALIDATOR_PYTHON names a Python that has the package:

    python3 -m venv /tmp/stixval && /tmp/stixval/bin/pip install stix2-validator
    /tmp/stixval/bin/python tests/reference/validate_stix.py bundle.json [more.json ...]

Options chosen:
- `strict_types`: only object types the specification defines (Tocsin writes no custom types);
- `enforce_refs`: every object a relationship or sighting refers to is in the same bundle;
- custom properties stay allowed: Tocsin's `x_tocsin_*` properties are declared by the Tocsin
  extension definition carried in the bundle (a toplevel-property-extension);
- recommendations ("SHOULD") are warnings, printed but not fatal, unless `--strict` is given.
  One is expected: `indicates` from an indicator to an incident is permitted but not among the
  relationships STIX 2.1 suggests (the 2.1 incident is a stub with no suggested ones);
- except that a relationship whose source or target is not in the bundle is an error here:
  the validator reports `enforce-relationship-refs` findings as warnings, but a bundle with a
  dangling reference is broken for its consumers.

The validator does not know extension schemas, so the properties of the DC3 incident-core
extension (`extension-definition--ef765651-680c-498d-9894-99799f2fa126`) are checked here
against its published definition (`cti-stix-common-objects`, incident-core): required
properties, `determination` and `investigation_status` values, no unknown properties.

Exit status: 0 when every file is valid, 1 when any has an error, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys

from stix2validator import ValidationOptions, validate_file

INCIDENT_CORE_EXTENSION = "extension-definition--ef765651-680c-498d-9894-99799f2fa126"

# The `determination` values of the incident-core versions published so far (the suite's
# document lists suspected, confirmed and false-positive; the JSON schema adds outcomes).
INCIDENT_CORE_DETERMINATIONS = {
    "blocked",
    "confirmed",
    "failed-attempt",
    "false-positive",
    "low-value",
    "successful-attempt",
    "suspected",
}
INCIDENT_CORE_STATUSES = {"new", "open", "closed"}
INCIDENT_CORE_PROPERTIES = {
    "extension_type",
    "scores",
    "determination",
    "investigation_status",
    "incident_types",
    "detection_methods",
    "criticality",
    "recoverability",
    "availability_impacts",
    "external_impacts",
    "confidentiality_impacts",
    "integrity_impacts",
    "monetary_impacts",
    "physical_impacts",
    "impacted_entity_counts",
    "traceability_impacts",
}

# Validator warnings that are errors for Tocsin (see the module docs).
FATAL_WARNING_PREFIXES = ("enforce-relationship-refs:",)


def object_results(file_results):
    """The per-object results of one file, whether the validator returned one or a list."""
    results = file_results.object_results
    if results is None:
        return []
    if isinstance(results, list):
        return results
    return [results]


def incident_core_errors(path: str) -> list[str]:
    """Problems with the incident-core extension of the incidents in one bundle."""
    with open(path, encoding="utf-8") as bundle_file:
        bundle = json.load(bundle_file)
    errors = []
    for obj in bundle.get("objects", []):
        extension = obj.get("extensions", {}).get(INCIDENT_CORE_EXTENSION)
        if obj.get("type") != "incident" or extension is None:
            continue
        where = f"[{obj.get('id')}] incident-core"
        if extension.get("extension_type") != "property-extension":
            errors.append(f"{where}: extension_type must be property-extension")
        if extension.get("determination") not in INCIDENT_CORE_DETERMINATIONS:
            errors.append(f"{where}: determination {extension.get('determination')!r}")
        if extension.get("investigation_status") not in INCIDENT_CORE_STATUSES:
            errors.append(
                f"{where}: investigation_status {extension.get('investigation_status')!r}"
            )
        for unknown in sorted(set(extension) - INCIDENT_CORE_PROPERTIES):
            errors.append(f"{where}: unknown property {unknown!r}")
    return errors


def validate(path: str, options: ValidationOptions) -> bool:
    """Validate one file, print its errors and warnings, and say whether it is valid."""
    file_results = validate_file(path, options)
    if file_results.fatal is not None:
        print(f"{path}: FATAL: {file_results.fatal.error}")
        return False
    errors = 0
    warnings = 0
    for result in object_results(file_results):
        for error in result.errors:
            errors += 1
            print(f"{path}: ERROR [{result.object_id}]: {error.message}")
        for warning in result.warnings or []:
            if str(warning).startswith(FATAL_WARNING_PREFIXES):
                errors += 1
                print(f"{path}: ERROR [{result.object_id}]: {warning}")
            else:
                warnings += 1
                print(f"{path}: WARNING [{result.object_id}]: {warning}")
    for error in incident_core_errors(path):
        errors += 1
        print(f"{path}: ERROR {error}")
    valid = bool(file_results.is_valid) and errors == 0
    verdict = "valid" if valid else "INVALID"
    print(f"{path}: {verdict} STIX 2.1 ({errors} errors, {warnings} warnings)")
    return valid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("files", nargs="+", help="STIX 2.1 JSON files (bundles)")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="treat the specification's recommendations (SHOULD) as errors",
    )
    args = parser.parse_args()
    options = ValidationOptions(
        version="2.1",
        strict=args.strict,
        strict_types=True,
        strict_properties=False,
        enforce_refs=True,
        silent=True,
    )
    all_valid = True
    for path in args.files:
        all_valid = validate(path, options) and all_valid
    return 0 if all_valid else 1


if __name__ == "__main__":
    sys.exit(main())
