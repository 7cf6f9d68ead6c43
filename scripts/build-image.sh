#!/usr/bin/env bash
# Builds the redis-vitals container image with buildah (or podman), FROM
# scratch: no base image is pulled from anywhere.
#
#   scripts/build-image.sh                      # release build, image localhost/redis-vitals:<version>
#   IMAGE=registry.example.com/redis-vitals:0.1.0 scripts/build-image.sh
#
# Steps: build target/release/redis-vitals (`cargo build --release --locked`)
# unless BINARY names a binary already built; assemble a root file system
# with the binary, exactly the shared libraries `ldd` lists for it, Debian's
# CA bundle and /etc/{nsswitch.conf,passwd,group}; then build
# deploy/image/Containerfile on it.
#
# Environment:
#   BINARY        the redis-vitals binary to package (default: build the release one)
#   IMAGE         the image name (default localhost/redis-vitals:<Cargo.toml version>)
#   BUILDER       buildah (default) or podman
#   BUILDER_OPTS  global options for the builder, e.g. "--root DIR --runroot DIR
#                 --storage-driver vfs" (used by the tests to keep their own store)
#   CONTEXT       where to assemble the build context (default: a temporary
#                 directory, removed afterwards); kept when given
#
# The tests (tests/image.rs) run this script on the debug binary that
# `cargo test` has built: same script, same Containerfile, smaller build.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILDER=${BUILDER:-buildah}
# shellcheck disable=SC2206 # word splitting of the options is wanted
BUILDER_OPTS=(${BUILDER_OPTS:-})
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
IMAGE=${IMAGE:-localhost/redis-vitals:$version}

if [ -z "${BINARY:-}" ]; then
  cargo build --release --locked
  BINARY=target/release/redis-vitals
fi
[ -x "$BINARY" ] || { echo "build-image: $BINARY is not an executable" >&2; exit 1; }

if [ -n "${CONTEXT:-}" ]; then
  mkdir -p "$CONTEXT"
  ctx=$CONTEXT
else
  ctx=$(mktemp -d)
  trap 'rm -rf "$ctx"' EXIT
fi
rootfs=$ctx/rootfs
rm -rf "$rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs"

# The binary, without debug info (symbols stay, so panics still name functions).
objcopy --strip-debug "$BINARY" "$rootfs/usr/local/bin/redis-vitals"
chmod 0755 "$rootfs/usr/local/bin/redis-vitals"

# Exactly the shared libraries the binary loads, at the paths ldd resolves
# them to, the loader included. Symlinks are followed: one file per name.
libs=$(ldd "$BINARY" | awk '/=> \// { print $3 } /^\t\// { print $1 }')
[ -n "$libs" ] || { echo "build-image: ldd lists no libraries for $BINARY (static?)" >&2; exit 1; }
for lib in $libs; do
  mkdir -p "$rootfs$(dirname "$lib")"
  cp -L "$lib" "$rootfs$lib"
done

# Host names (Kubernetes service names) resolve through glibc's getaddrinfo:
# since glibc 2.34 the files and dns NSS modules are part of libc.so.6, so no
# libnss_*.so is needed, only this file (tests/image.rs resolves a name from
# /etc/hosts inside the image's file system to prove it).
printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/nonexistent:/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$rootfs/etc/group"

# rediss:// targets without a CA file use the system's store.
ca=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca" ] || { echo "build-image: $ca missing (apt-get install ca-certificates)" >&2; exit 1; }
cp -L "$ca" "$rootfs$ca"
chmod -R u=rwX,go=rX "$rootfs"

"$BUILDER" "${BUILDER_OPTS[@]}" build --quiet --timestamp 0 \
  -f deploy/image/Containerfile -t "$IMAGE" "$ctx"
echo "built $IMAGE from $BINARY"
"$BUILDER" "${BUILDER_OPTS[@]}" images --format '{{.Name}}:{{.Tag}} {{.Size}}' "$IMAGE"
