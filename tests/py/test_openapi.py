"""The dispatcher's OpenAPI document against the running dispatcher: the served
/openapi.json is the committed docs/openapi.json (the Rust test keeps that file in step with
the code), and schemathesis fuzzes every operation from it (and the links between them),
bounded in examples and time:
no 5xx, every status code, content type, header and body as documented, auth enforced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fleet_fixture import ROOT, out_dir

MAX_EXAMPLES = int(os.environ.get("FLEET_SCHEMATHESIS_EXAMPLES", "20"))
TIME_LIMIT_S = 240
CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "ignored_auth",
])


def test_served_document_is_the_committed_one(fleet):
    status, body, headers = fleet.get("/openapi.json", token=False)
    assert status == 200 and headers["content-type"].startswith("application/json")
    served = json.loads(body)
    assert served == json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert served["openapi"] == "3.1.0"


def test_schemathesis_finds_no_server_error_and_no_contract_violation(fleet):
    report = out_dir() / "schemathesis"
    cmd = [
        str(Path(sys.executable).parent / "schemathesis"), "run", f"{fleet.http_url}/openapi.json",
        "--header", f"Authorization: Bearer {fleet.token}",
        "--checks", CHECKS,
        # stateful: follows the document's links from a submitted job to its status, result,
        # timeline and cancel, so those see real job ids and not only 404s.
        "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(MAX_EXAMPLES),
        "--seed", "14",
        "--workers", "2",
        "--request-timeout", "10",
        "--report", "junit", "--report-dir", str(report),
    ]
    try:
        # cwd: schemathesis keeps a cache folder where it runs; keep it in the test output.
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=TIME_LIMIT_S,
                             env={**os.environ, "NO_COLOR": "1"}, cwd=out_dir())
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"schemathesis ran past {TIME_LIMIT_S} s:\n{(e.stdout or b'')[-4000:]}") from None
    (report / "output.txt").write_text(run.stdout + run.stderr)
    assert run.returncode == 0, f"schemathesis found problems (full output in {report}):\n{run.stdout[-6000:]}"
    assert "passed" in run.stdout.lower(), run.stdout[-2000:]
