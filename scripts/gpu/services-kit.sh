#!/usr/bin/env bash
# Packs what a GPU host without a registry needs besides the fleet's binaries: RabbitMQ (with
# its Erlang runtime), Redis and ffmpeg/ffprobe, taken from this machine's Debian packages
# (`scripts/services.sh` installs them), into one relocatable folder:
#
#   scripts/gpu/services-kit.sh OUT.tar.xz
#
# Layout inside the archive (unpack anywhere, then `. svc/env.sh`):
#   svc/bin/{redis-server,redis-cli,ffmpeg,ffprobe,erl}   wrappers that set their library path
#   svc/libexec/                                          the real binaries
#   svc/lib/                                              their shared libraries, less glibc
#   svc/erlang/, svc/rabbitmq/                            Debian's trees, made relocatable
#   svc/env.sh                                            PATH and FLEET_SVC for the shell
#
# The libraries are the closure `ldd` resolves here, without the C library itself (libc, libm,
# libpthread, libdl, librt, the loader): the host's newer glibc serves them. Only the wrapped
# programs see svc/lib, so the fleet's own binaries and the CUDA libraries are not affected.
# `scripts/gpu-run.sh services` starts them from this folder (see docs/gpu-fleet.md).
set -euo pipefail
OUT="${1:?usage: services-kit.sh OUT.tar.xz}"
OUT="$(realpath -m "$OUT")"
for b in redis-server redis-cli ffmpeg ffprobe; do
    command -v "$b" >/dev/null || { echo "services-kit: $b missing; run scripts/services.sh" >&2; exit 1; }
done
[ -d /usr/lib/erlang ] && [ -d /usr/lib/rabbitmq ] ||
    { echo "services-kit: RabbitMQ/Erlang missing; run scripts/services.sh" >&2; exit 1; }

T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
S=$T/svc
mkdir -p "$S/bin" "$S/libexec" "$S/lib"

glibc='/(libc|libm|libpthread|libdl|librt|libresolv|libutil)\.so|/ld-linux'
closure() { ldd "$@" 2>/dev/null | awk '/=> \//{print $3}' | grep -v -E "$glibc" | sort -u; }

for b in redis-server redis-cli ffmpeg ffprobe; do
    cp "$(command -v "$b")" "$S/libexec/$b"
    cat > "$S/bin/$b" <<EOF
#!/bin/sh
d=\$(dirname "\$(readlink -f "\$0")")/..
LD_LIBRARY_PATH="\$d/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$d/libexec/$b" "\$@"
EOF
    chmod +x "$S/bin/$b"
done

cp -a /usr/lib/erlang "$S/erlang"
cp -a /usr/lib/rabbitmq "$S/rabbitmq"
# Debian's `erl` scripts hard-code ROOTDIR=/usr/lib/erlang; these read it from the kit.
for f in "$S"/erlang/bin/erl "$S"/erlang/erts-*/bin/erl; do
    sed -i 's|ROOTDIR=/usr/lib/erlang$|ROOTDIR="${FLEET_ERL_ROOT:?}"|' "$f"
    ! grep -q '/usr/lib/erlang' "$f" || { echo "services-kit: cannot relocate $f" >&2; exit 1; }
done
# The Erlang emulator and its NIFs (crypto links OpenSSL) also get the kit's libraries.
nifs=$(find "$S/erlang" -name '*.so' -type f)
{ closure "$S"/libexec/* ; closure "$S"/erlang/erts-*/bin/beam.smp $nifs; } | sort -u > "$T/libs"
while read -r l; do cp -L "$l" "$S/lib/"; done < "$T/libs"
erts=$(basename "$(ls -d "$S"/erlang/erts-*)")
cat > "$S/bin/erl" <<EOF
#!/bin/sh
d=\$(dirname "\$(readlink -f "\$0")")/..
export FLEET_ERL_ROOT="\$d/erlang"
LD_LIBRARY_PATH="\$d/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "\$d/erlang/bin/erl" "\$@"
EOF
chmod +x "$S/bin/erl"
cat > "$S/env.sh" <<EOF
# . svc/env.sh: the kit's programs first on PATH.
FLEET_SVC=\$(cd "\$(dirname "\${BASH_SOURCE[0]:-\$0}")" && pwd)
export FLEET_SVC FLEET_ERL_ROOT="\$FLEET_SVC/erlang"
export PATH="\$FLEET_SVC/bin:\$FLEET_SVC/erlang/bin:\$FLEET_SVC/rabbitmq/bin:\$PATH"
# Erlang's escript finds erl beside itself: that one is relocated too.
export ERTS=$erts
EOF
{
    echo "redis $(redis-server --version | awk '{print $3}')"
    echo "rabbitmq $(basename "$(ls -d /usr/lib/rabbitmq/lib/rabbitmq_server-*)")"
    echo "erlang $erts"
    ffmpeg -hide_banner -version | head -n1
    echo "libraries $(wc -l < "$T/libs")"
} > "$S/VERSIONS"
tar -C "$T" -cf - svc | xz -6 -T2 > "$OUT"
echo "services-kit: $(du -h "$OUT" | cut -f1) -> $OUT"
cat "$S/VERSIONS"
