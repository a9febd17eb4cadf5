#!/usr/bin/env bash
# Build the service image from the Dockerfile, as localhost/mars-impacts:latest, reproducibly.
#
#   .ci/image.sh                                   # what `make image` runs
#   BASE_IMAGE=python:3.11-slim .ci/image.sh       # force a base (pulled when missing)
#   IMPACTS_CONTAINER_ENGINE=docker .ci/image.sh   # force an engine (podman or docker)
#   IMPACTS_REBUILD_BASE=1 .ci/image.sh            # remake the local Debian base (security updates)
#
# What it does:
#   1. picks the engine: $IMPACTS_CONTAINER_ENGINE, else podman when installed, else docker when
#      its daemon answers, else podman + runc installed with apt-get (root only, about 10 s);
#   2. picks the base: $BASE_IMAGE when set; else python:3.11-slim when it is here or can be
#      pulled; else (no registry reachable) a Debian bookworm file system made with
#      `debootstrap --variant=minbase` plus python3, python3-venv and the bookworm security
#      updates, imported once as localhost/mars-impacts-base:bookworm (about 1 min) and reused;
#   3. checks that a container starts at all. On hosts where runc may not set podman's default
#      rlimits (`error setting rlimit type 7: operation not permitted`) or crun refuses the
#      cgroup layout, it writes a containers.conf drop-in (default_ulimits = [], runtime runc),
#      and only there: where containers already start, podman's configuration is left alone;
#   4. builds (podman: `--network host`, docker image format so that HEALTHCHECK is kept).
#      With podman a folder of wheels outside the repository,
#      ${XDG_CACHE_HOME:-$HOME/.cache}/mars-impacts/image-build/wheels, is mounted into the build, so
#      the ~600 MB of TensorFlow wheels are downloaded once per machine (the image keeps no cache),
#      and so is this machine's CA bundle (pip's $PIP_CERT, else the system's), for networks
#      that inspect TLS.
#      Layers are reused: with only code changed, a rebuild re-runs the last step only.
#
# Where no container can run here (podman missing and not installable, no registry and no way
# to make a base, a container that does not start), it prints why on one line, writes that
# line to ${XDG_CACHE_HOME:-$HOME/.cache}/mars-impacts/image-unavailable and exits 0, so that
# `make test` goes on and tests/e2e/test_container.py skips with that reason
# (IMPACTS_REQUIRE_CONTAINER=1 makes it fail instead). Once a container runs, a failed build fails.
set -euo pipefail

cd "$(dirname "$0")/.."
IMAGE=${IMPACTS_IMAGE:-localhost/mars-impacts:latest}
PUBLIC_BASE=docker.io/library/python:3.11-slim
LOCAL_BASE=localhost/mars-impacts-base:bookworm
SUITE=bookworm # Debian 12: Python 3.11, as pyproject.toml requires
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mars-impacts"
UNAVAILABLE="$CACHE_ROOT/image-unavailable" # read by tests/e2e/test_container.py
BUILD_MOUNT="$CACHE_ROOT/image-build" # wheels and CA bundle for the build
DROP_IN_NAME=50-mars-impacts.conf

log() { printf '[image] %s\n' "$*"; }
die() {
    printf '[image] ERROR: %s\n' "$*" >&2
    exit 1
}
# No container can run here: say why, leave the reason for the test, and let `make test` go on.
unavailable() {
    printf '[image] cannot build or run containers here: %s\n' "$*" >&2
    mkdir -p "$CACHE_ROOT"
    printf '%s\n' "$*" >"$UNAVAILABLE"
    exit 0
}

mkdir -p "$CACHE_ROOT"
rm -f "$UNAVAILABLE"
TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/mars-impacts-image.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
start=$SECONDS

apt_install() {
    [ "$(id -u)" = 0 ] || return 1
    command -v apt-get >/dev/null 2>&1 || return 1
    log "installing $* with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    # Wait for another apt/dpkg run (make's other set-up steps) instead of failing on its lock.
    if ! { apt-get -qq -o DPkg::Lock::Timeout=600 update &&
        apt-get -qq -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "$@"; } >"$TMP/apt.log" 2>&1; then
        tail -n 5 "$TMP/apt.log" >&2
        return 1
    fi
}

# ---------------------------------------------------------------- 1. the engine
ENGINE=${IMPACTS_CONTAINER_ENGINE:-}
if [ -z "$ENGINE" ]; then
    if command -v podman >/dev/null 2>&1; then
        ENGINE=podman
    elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        ENGINE=docker
    else
        ENGINE=podman
    fi
fi
case $ENGINE in
podman)
    # runc: crun (podman's first choice) refuses the cgroup layout of some hosts.
    if ! command -v podman >/dev/null 2>&1 || ! command -v runc >/dev/null 2>&1; then
        # debootstrap too (80 kB), in case step 2 needs it: one apt-get update instead of two.
        apt_install podman runc debootstrap ||
            unavailable "podman and runc are not installed and cannot be installed here (needs root and apt-get): sudo apt-get install podman runc"
    fi
    ;;
docker)
    docker info >/dev/null 2>&1 || unavailable "docker's daemon does not answer (docker info failed)"
    ;;
*) die "IMPACTS_CONTAINER_ENGINE=$ENGINE: use podman or docker" ;;
esac
# Flags this host may need (harmless elsewhere): the host's network, since podman's own
# networks need iptables; the host's rlimits, which runc may not raise.
RUN_FLAGS=()
[ "$ENGINE" = podman ] && RUN_FLAGS=(--network host --ulimit host)

have_image() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------- 2. the base
make_local_base() {
    [ "$(id -u)" = 0 ] || unavailable "no registry answers and making the Debian base ($LOCAL_BASE) needs root for debootstrap; run make image as root once, or set BASE_IMAGE to a Python 3.11 image you have"
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap ||
        unavailable "no registry answers and debootstrap cannot be installed to make a base (sudo apt-get install debootstrap)"
    local root="$TMP/rootfs"
    log "no registry answers: making $LOCAL_BASE with debootstrap ($SUITE, minbase + python3, about 1 min)"
    if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$root" "$MIRROR" >"$TMP/debootstrap.log" 2>&1; then
        tail -n 5 "$TMP/debootstrap.log" >&2
        unavailable "no registry answers and debootstrap could not fetch Debian $SUITE from $MIRROR (set DEBIAN_MIRROR, or BASE_IMAGE to a Python 3.11 image you have)"
    fi
    # The same sources as a Debian image, so that apt-get in the Dockerfile finds security updates.
    cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
    chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c 'apt-get -qq update && apt-get -qq -y upgrade && apt-get clean' >"$TMP/upgrade.log" 2>&1 || {
        tail -n 5 "$TMP/upgrade.log" >&2
        die "could not apply the $SUITE updates to the base (log above)"
    }
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/log/*.log
    # PATH and LANG as in the Debian and Python images (an imported file system has no ENV).
    tar -C "$root" -c . | "$ENGINE" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        - "$LOCAL_BASE" >/dev/null
    log "made $LOCAL_BASE ($((SECONDS - start)) s so far)"
}

exec 9>"$CACHE_ROOT/.image.lock"
flock 9 # one build per machine at a time; a second caller then reuses the base and the layers

if [ -n "${BASE_IMAGE:-}" ]; then
    have_image "$BASE_IMAGE" || "$ENGINE" pull "$BASE_IMAGE" || die "cannot pull BASE_IMAGE=$BASE_IMAGE"
elif have_image "$LOCAL_BASE" && [ "${IMPACTS_REBUILD_BASE:-0}" != 1 ]; then
    BASE_IMAGE=$LOCAL_BASE # made here before: no registry answered then
elif have_image "$PUBLIC_BASE" || timeout 120 "$ENGINE" pull -q "$PUBLIC_BASE" >/dev/null 2>&1; then
    BASE_IMAGE=$PUBLIC_BASE
else
    make_local_base
    BASE_IMAGE=$LOCAL_BASE
fi
log "engine $ENGINE ($("$ENGINE" --version | head -n1)), base $BASE_IMAGE"

# ---------------------------------------------------------------- 3. can a container start?
starts() { "$ENGINE" run --rm "${RUN_FLAGS[@]}" "$BASE_IMAGE" true >"$TMP/run.log" 2>&1; }
if ! starts; then
    why=$(grep -v '^$' "$TMP/run.log" | tail -n 1)
    [ "$ENGINE" = podman ] || unavailable "docker cannot start a container from $BASE_IMAGE: $why"
    # Where no container starts as configured, podman gets a drop-in that fixes this host.
    if [ "$(id -u)" = 0 ]; then
        drop_in_dir=/etc/containers/containers.conf.d
    else
        drop_in_dir="${XDG_CONFIG_HOME:-$HOME/.config}/containers/containers.conf.d"
    fi
    log "podman cannot start a container as configured ($why)"
    log "writing $drop_in_dir/$DROP_IN_NAME: default_ulimits = [] and runtime runc"
    mkdir -p "$drop_in_dir"
    cat >"$drop_in_dir/$DROP_IN_NAME" <<'EOF'
# Written by mars-impacts .ci/image.sh, because no container started here without it:
# runc may not raise the rlimits that podman sets by default ("error setting rlimit type 7:
# operation not permitted"), and crun refuses some hosts' cgroup layout. Delete this file to undo.
[containers]
default_ulimits = []

[engine]
runtime = "runc"
EOF
    if ! starts; then
        rm -f "$drop_in_dir/$DROP_IN_NAME"
        unavailable "podman cannot start a container here, even with default_ulimits = [] and runc: $(grep -v '^$' "$TMP/run.log" | tail -n 1)"
    fi
fi
if [ "$ENGINE" = podman ] && [ "$(id -u)" != 0 ] &&
    [ "$(podman unshare cat /proc/self/uid_map 2>/dev/null | wc -l)" -lt 2 ]; then
    # The image's user (uid 10001) needs a subordinate uid range in rootless podman.
    unavailable "rootless podman without a subordinate uid range for $(id -un): sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $(id -un) (and apt-get install uidmap)"
fi

# ---------------------------------------------------------------- 4. build
build=("$ENGINE" build --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "$IMAGE")
if [ "$ENGINE" = podman ]; then
    # --pull=never: the base is here (step 2); docker format keeps the HEALTHCHECK (OCI drops it).
    # (podman build takes no --ulimit host, and needs none: its rlimits are within the host's.)
    build+=(--network host --pull=never --format docker)
    # The wheels and this machine's CA bundle (pip's $PIP_CERT, else the system's: pip in the
    # build then trusts a TLS-inspecting proxy as this machine does) reach the build in one folder,
    # mounted over /mnt: mounting on a path the base lacks would leave an empty mount point in the image.
    mkdir -p "$BUILD_MOUNT/wheels"
    build+=(--volume "$BUILD_MOUNT:/mnt:z" --build-arg BUILD_WHEELS=/mnt/wheels)
    rm -f "$BUILD_MOUNT/ca-bundle.crt"
    for ca in "${PIP_CERT:-}" "${REQUESTS_CA_BUNDLE:-}" "${SSL_CERT_FILE:-}" \
        /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
        if [ -n "$ca" ] && [ -s "$ca" ]; then
            cp "$ca" "$BUILD_MOUNT/ca-bundle.crt"
            build+=(--build-arg BUILD_CA_BUNDLE=/mnt/ca-bundle.crt)
            break
        fi
    done
fi
log "building $IMAGE: ${build[*]} ."
build_start=$SECONDS
"${build[@]}" . || die "the image build failed (output above)"
size=$("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE" | awk '{ printf "%.2f GB", $1 / 1e9 }')
log "built $IMAGE ($size) in $((SECONDS - build_start)) s ($((SECONDS - start)) s in all)"
