"""The README's Python examples, run as written against the test fleet, so the docs cannot
drift from the code. Every ```python block of README.md runs, in order, in one interpreter
(later blocks use what earlier ones defined, as a reader would); the fleet is found through the
variables the examples read (FLEET_URL, FLEET_AMQP_URL, FLEET_REDIS_URL, FLEET_PREFIX,
FLEET_API_TOKEN), whose defaults are the fleet's own."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from fleet_fixture import ROOT, out_dir

BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list:
    return BLOCK.findall((ROOT / "README.md").read_text())


def test_the_readme_has_python_examples():
    blocks = readme_blocks()
    assert len(blocks) >= 3, "README.md lost its Python examples"
    joined = "\n".join(blocks)
    for must in ("FleetClient", "pika", "redis"):
        assert must in joined, f"no README example uses {must}"


def test_the_readme_examples_run_against_the_fleet(fleet):
    script = "\n\n".join(f"# ---- README block {i + 1}\n{b}" for i, b in enumerate(readme_blocks()))
    path = out_dir() / "readme_examples.py"
    path.write_text(script)
    env = {**os.environ, "FLEET_URL": fleet.http_url, "FLEET_AMQP_URL": fleet.amqp_url,
           "FLEET_REDIS_URL": fleet.redis_url, "FLEET_PREFIX": fleet.prefix, "FLEET_API_TOKEN": fleet.token}
    run = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=180, env=env, cwd=out_dir())
    assert run.returncode == 0, f"{path} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    # The examples print what they read: each job completed.
    assert run.stdout.count("completed") >= 2, run.stdout
