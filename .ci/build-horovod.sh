#!/usr/bin/env bash
# Install Horovod (TensorFlow + MPI) into the project's virtualenv, reproducibly.
#
#   .ci/build-horovod.sh                      # VENV=.venv HOROVOD_VERSION=0.28.1
#   VENV=/path/to/venv .ci/build-horovod.sh
#   HOROVOD_GPU_OPERATIONS=NCCL .ci/build-horovod.sh   # GPU build on a CUDA node (see note below)
#
# What it does:
#   1. exits at once when the venv already has a working Horovod of this version;
#   2. installs OpenMPI/cmake/g++/make with apt-get when missing (root only);
#   3. reuses a wheel cached outside the repository, in
#      ${XDG_CACHE_HOME:-$HOME/.cache}/mars-impacts/wheels/<key>/, where <key> names the
#      Horovod, TensorFlow and Python versions, the OS, the arch and the build options;
#      otherwise builds it from the sdist (about 4 minutes on 2 cores) and caches it;
#   4. checks the install: horovodrun --check-build and a 2-process allreduce under mpirun.
#
# Why a patch: Horovod 0.28.1 (the last release) does not build against TensorFlow >= 2.16
# wheels because horovod/tensorflow/xla_mpi_ops.cc includes TF/XLA headers that need
# highwayhash/arch_specific.h, which the TF wheel does not ship. The XLA ops in that file are
# only used by GPU builds, so the patch compiles that block only when HAVE_GPU is set.
# NOTE (GPU builds, HOROVOD_GPU_OPERATIONS=NCCL etc.): with HAVE_GPU the block is compiled
# again and may still fail on the missing highwayhash header; that build is untested with
# TF 2.21. If it fails there, put highwayhash's headers (github.com/google/highwayhash) on
# CPATH before running this script.
#
# Gloo is left out (HOROVOD_WITHOUT_GLOO=1): horovodrun launches through mpirun when MPI is
# built; Gloo is only needed for elastic training (horovodrun --min-np/--host-discovery-script)
# or horovodrun --gloo. Export HOROVOD_WITH_GLOO=1 to build it in (it gets its own cache key).
set -euo pipefail

cd "$(dirname "$0")/.."
REPO=$(pwd)
VENV=${VENV:-.venv}
case $VENV in /*) ;; *) VENV="$REPO/$VENV" ;; esac
HOROVOD_VERSION=${HOROVOD_VERSION:-0.28.1}
# sha256 of the PyPI sdists this script has been checked with.
declare -A SDIST_SHA256=(
    [0.28.1]=92a43f5a94c43907a56805bad15f19700c62ffc83b7ca483f9e104e229f67ef0
)
PATCH_REV=1 # bump when the patch below changes, so that cached wheels are rebuilt
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

log() { printf '[build-horovod] %s\n' "$*"; }
die() {
    printf '[build-horovod] ERROR: %s\n' "$*" >&2
    exit 1
}

[ -x "$PY" ] || die "no virtualenv at $VENV (run 'make dev' first, or set VENV=...)"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
# OpenMPI refuses to start as root unless told it is fine (containers, CI).
if [ "$(id -u)" = 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

# ---------------------------------------------------------------- build options and cache key
# Defaults for a CPU build; anything HOROVOD_* the caller exported is passed through to the build.
export HOROVOD_WITH_TENSORFLOW=${HOROVOD_WITH_TENSORFLOW:-1}
export HOROVOD_WITHOUT_PYTORCH=${HOROVOD_WITHOUT_PYTORCH:-1}
export HOROVOD_WITHOUT_MXNET=${HOROVOD_WITHOUT_MXNET:-1}
export HOROVOD_WITH_MPI=${HOROVOD_WITH_MPI:-1}
if [ -z "${HOROVOD_WITH_GLOO:-}" ]; then
    export HOROVOD_WITHOUT_GLOO=${HOROVOD_WITHOUT_GLOO:-1}
fi

build_options() { env | grep -E '^HOROVOD_(WITH|WITHOUT|GPU|CPU_OPERATIONS|NCCL|CUDA|ROCM|BUILD_ARCH|DEBUG|CCL|DDL|CMAKE|MPI)' | LC_ALL=C sort || true; }
if build_options | grep -q '^HOROVOD_GPU'; then kind=gpu; else kind=cpu; fi
opts_hash=$(build_options | sha256sum | cut -c1-8)

versions=$("$PY" - <<'EOF'
import importlib.metadata as md
import sys

for dist in ("tensorflow", "tensorflow-cpu", "tf-nightly"):
    try:
        print(md.version(dist), f"cp{sys.version_info.major}{sys.version_info.minor}")
        break
    except md.PackageNotFoundError:
        pass
else:
    sys.exit("TensorFlow is not installed in this virtualenv")
EOF
) || die "could not read the TensorFlow version from $VENV"
read -r TF_VERSION PY_TAG <<<"$versions"
# shellcheck disable=SC1091
os_tag=$(. /etc/os-release 2>/dev/null && echo "${ID:-linux}${VERSION_ID:-}") || os_tag=linux
KEY="horovod-${HOROVOD_VERSION}-tf${TF_VERSION}-${PY_TAG}-${os_tag}-$(uname -m)-${kind}-${opts_hash}-p${PATCH_REV}"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/mars-impacts/wheels"
CACHE_DIR="$CACHE_ROOT/$KEY"
MARKER="$VENV/.horovod-build-key"

# ---------------------------------------------------------------- 1. already done?
# The same facts as `horovodrun --check-build` (TensorFlow extension loads, MPI built) in one
# process: check-build forks a TensorFlow import per line and takes ~25 s; this takes ~5 s.
horovod_works() {
    "$PY" - "$HOROVOD_VERSION" <<'EOF' >/dev/null 2>&1
import sys
import horovod
assert horovod.__version__ == sys.argv[1], horovod.__version__
import horovod.tensorflow as hvd  # loads the compiled TF extension (fails on a TF ABI mismatch)
assert hvd.mpi_built(), "not built with MPI"
hvd.init()
assert hvd.size() == 1 and hvd.rank() == 0
hvd.shutdown()
EOF
}

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$KEY" ] && horovod_works; then
    log "Horovod $HOROVOD_VERSION already installed in $VENV ($KEY); nothing to do"
    exit 0
fi

# ---------------------------------------------------------------- 2. system packages
need_pkgs() {
    local missing=()
    command -v mpirun >/dev/null 2>&1 || missing+=(openmpi-bin)
    if [ "${1:-}" = build ]; then
        command -v mpicc >/dev/null 2>&1 || missing+=(libopenmpi-dev)
        command -v cmake >/dev/null 2>&1 || missing+=(cmake)
        command -v g++ >/dev/null 2>&1 || missing+=(g++)
        command -v make >/dev/null 2>&1 || missing+=(make)
    fi
    echo "${missing[@]:-}"
}
ensure_pkgs() {
    local missing
    missing=$(need_pkgs "${1:-}")
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        die "missing system packages: $missing
    install them first, e.g.:  sudo apt-get install -y --no-install-recommends $missing"
    fi
    command -v apt-get >/dev/null 2>&1 || die "missing system packages ($missing) and no apt-get to install them"
    log "installing system packages: $missing"
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    missing=$(need_pkgs "${1:-}")
    [ -z "$missing" ] || die "still missing after apt-get install: $missing"
}

# ---------------------------------------------------------------- 3. wheel: cached or built
TMP=$(mktemp -d "${TMPDIR:-/tmp}/horovod-build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"
flock 9 # one build at a time per machine; a second caller then reuses the wheel

find_wheel() { compgen -G "$CACHE_DIR/horovod-${HOROVOD_VERSION}-*.whl" | head -n1 || true; }
WHEEL=$(find_wheel)

if [ -z "$WHEEL" ]; then
    ensure_pkgs build
    log "building Horovod $HOROVOD_VERSION wheel for TensorFlow $TF_VERSION ($kind, about 4 minutes)..."
    start=$SECONDS

    # Build requirements for a --no-build-isolation build (setup.py's setup_requires).
    build_deps=(setuptools wheel cloudpickle psutil pyyaml packaging)
    [ "$HOROVOD_WITHOUT_PYTORCH" = 1 ] || build_deps+=(cffi)
    "${PIP[@]}" install -q "${build_deps[@]}"

    log "downloading the horovod==$HOROVOD_VERSION sdist"
    "${PIP[@]}" download -q --no-deps --no-binary :all: -d "$TMP/sdist" "horovod==$HOROVOD_VERSION"
    sdist=$(compgen -G "$TMP/sdist/horovod-${HOROVOD_VERSION}.tar.gz" | head -n1 || true)
    [ -n "$sdist" ] || die "pip did not download horovod-${HOROVOD_VERSION}.tar.gz"
    if [ -n "${SDIST_SHA256[$HOROVOD_VERSION]:-}" ]; then
        echo "${SDIST_SHA256[$HOROVOD_VERSION]}  $sdist" | sha256sum -c --quiet - || die "sha256 mismatch for $sdist"
    else
        log "warning: no pinned sha256 for horovod $HOROVOD_VERSION, not checking the sdist"
    fi
    tar -xzf "$sdist" -C "$TMP"
    src="$TMP/horovod-$HOROVOD_VERSION"

    log "patching horovod/tensorflow/xla_mpi_ops.cc (XLA ops only with HAVE_GPU)"
    "$PY" - "$src/horovod/tensorflow/xla_mpi_ops.cc" <<'EOF' || die "could not patch xla_mpi_ops.cc"
import re, sys
path = sys.argv[1]
text = open(path).read()
pattern = re.compile(r"^#if (TENSORFLOW_VERSION >= \d+)[ \t]*$", re.M)
hits = pattern.findall(text)
if len(hits) != 1:
    sys.exit(f"expected exactly one '#if TENSORFLOW_VERSION >= N' line in {path}, found {len(hits)}")
text = pattern.sub(r"#if \1 && HAVE_GPU", text)
open(path, "w").write(text)
EOF

    log "compiling (cmake + make -j$(nproc))"
    if ! MAKEFLAGS="-j$(nproc)" "${PIP[@]}" wheel -v --no-deps --no-build-isolation \
        -w "$TMP/dist" "$src" >"$TMP/build.log" 2>&1; then
        cp "$TMP/build.log" "$CACHE_ROOT/$KEY.failed.log"
        tail -n 60 "$TMP/build.log" >&2
        die "Horovod build failed (last 60 lines above; full log in $CACHE_ROOT/$KEY.failed.log)"
    fi
    built=$(compgen -G "$TMP/dist/horovod-*.whl" | head -n1 || true)
    [ -n "$built" ] || die "pip wheel produced no wheel"
    mkdir -p "$CACHE_DIR"
    cp "$built" "$CACHE_DIR/.tmp.whl"
    mv "$CACHE_DIR/.tmp.whl" "$CACHE_DIR/$(basename "$built")"
    build_options >"$CACHE_DIR/build-options.txt"
    rm -f "$CACHE_ROOT/$KEY.failed.log"
    WHEEL=$(find_wheel)
    log "built $(basename "$WHEEL") in $((SECONDS - start)) s; cached in $CACHE_DIR"
else
    ensure_pkgs
    log "using cached wheel $WHEEL"
fi
exec 9>&-

log "installing $(basename "$WHEEL") into $VENV"
rm -f "$MARKER" # written back only once the checks below pass
"${PIP[@]}" install -q --force-reinstall --no-deps "$WHEEL"
# Its runtime requirements (no-op when the build step already installed them).
"${PIP[@]}" install -q cloudpickle psutil pyyaml packaging

# ---------------------------------------------------------------- 4. verify
log "checking: horovodrun --check-build"
check=$("$VENV/bin/horovodrun" --check-build 2>/dev/null) || die "horovodrun --check-build failed"
echo "$check" | grep -q '\[X\] TensorFlow' || die "Horovod was built without TensorFlow:
$check"
echo "$check" | grep -q '\[X\] MPI' || die "Horovod was built without MPI:
$check"

log "checking: 2-process allreduce under mpirun"
# Each rank writes its line to its own file: mpirun forwards stdout in arbitrary chunks, so
# the two ranks' printed lines can come out interleaved.
smoke='import sys, horovod.tensorflow as hvd, tensorflow as tf
hvd.init()
avg = float(hvd.allreduce(tf.constant(float(hvd.rank())), op=hvd.Average))
open(f"{sys.argv[1]}/smoke.{hvd.rank()}", "w").write(f"{hvd.rank()} {hvd.size()} {avg}\n")'
mpirun --oversubscribe -np 2 "$PY" -c "$smoke" "$TMP" >"$TMP/smoke.log" 2>&1 || {
    cat "$TMP/smoke.log" >&2
    die "mpirun smoke test failed"
}
out=$(cat "$TMP/smoke.0" "$TMP/smoke.1" 2>/dev/null || true)
printf '    rank size mean: %s\n' "${out//$'\n'/$'\n'    rank size mean: }"
[ "$out" = $'0 2 0.5\n1 2 0.5' ] || die "unexpected allreduce result (want '0 2 0.5' and '1 2 0.5'): $out"

echo "$KEY" >"$MARKER"
log "Horovod $HOROVOD_VERSION ready in $VENV"
