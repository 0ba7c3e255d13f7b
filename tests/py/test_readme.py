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


def readme_blocks(readme: str = "README.md") -> list:
    return BLOCK.findall((ROOT / readme).read_text())


def run_blocks(fleet, readme: str, name: str):
    script = "\n\n".join(f"# ---- {readme} block {i + 1}\n{b}" for i, b in enumerate(readme_blocks(readme)))
    path = out_dir() / name
    path.write_text(script)
    env = {**os.environ, "FLEET_URL": fleet.http_url, "FLEET_AMQP_URL": fleet.amqp_url,
           "FLEET_REDIS_URL": fleet.redis_url, "FLEET_PREFIX": fleet.prefix, "FLEET_API_TOKEN": fleet.token}
    run = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=180, env=env, cwd=out_dir())
    assert run.returncode == 0, f"{path} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return run.stdout


def test_the_readme_has_python_examples():
    blocks = readme_blocks()
    assert len(blocks) >= 3, "README.md lost its Python examples"
    joined = "\n".join(blocks)
    for must in ("FleetClient", "pika", "redis"):
        assert must in joined, f"no README example uses {must}"


def test_the_readme_examples_run_against_the_fleet(fleet):
    out = run_blocks(fleet, "README.md", "readme_examples.py")
    # The examples print what they read: the client's job, the pika job's event, its Redis record.
    lines = out.splitlines()
    assert lines[0].startswith("completed Progress("), out
    assert any(line.startswith("job.completed completed 1 of 1") for line in lines), out
    assert lines[-1].startswith("completed ok "), out


def test_the_client_readme_example_runs(fleet):
    assert readme_blocks("clients/python/README.md")
    run_blocks(fleet, "clients/python/README.md", "client_readme_example.py")
