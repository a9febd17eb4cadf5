#!/usr/bin/env bash
# Install headless Chromium and its WebDriver for the browser tests (tests/e2e), reproducibly.
#
#   .ci/browser.sh            # what `make browser` runs
#
# What it does:
#   1. exits at once (well under a second) when Debian's `chromium`, `chromium-driver` and a
#      font are installed at the same version;
#   2. otherwise installs them with apt-get --no-install-recommends (root only; the chromium
#      packages are ~120 MB to download, plus shared libraries a bare Debian 12 lacks; 15 s
#      where most libraries are present); as non-root it prints the command and fails;
#   3. checks that Chromium starts headless and renders a page.
#
# Why Selenium + chromium-driver (and not Playwright): Debian's chromium-driver depends on
# `chromium (= the same version)`, so apt upgrades the browser and its driver together and
# they can never drift apart; the Python side speaks W3C WebDriver, which does not change
# with Chromium versions. Playwright only promises to work with the Chromium it downloads
# from its own CDN, which CI cannot reach.
#
# Fonts: fonts-dejavu-core, so that screenshots show readable text instead of empty boxes.
set -euo pipefail

PACKAGES=(chromium chromium-driver fonts-dejavu-core)
CHROMIUM=/usr/lib/chromium/chromium # the binary; /usr/bin/chromium is a shell wrapper around it
CHROMEDRIVER=/usr/bin/chromedriver

log() { printf '[browser] %s\n' "$*"; }
die() {
    printf '[browser] ERROR: %s\n' "$*" >&2
    exit 1
}

installed_version() { dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null | awk '$3 == "installed" { print $4 }'; }

missing_packages() {
    local pkg absent=()
    for pkg in "${PACKAGES[@]}"; do
        [ -n "$(installed_version "$pkg")" ] || absent+=("$pkg")
    done
    echo "${absent[@]:-}"
}

command -v dpkg-query >/dev/null 2>&1 || die "this script needs a Debian/Ubuntu system (dpkg, apt-get);
    elsewhere install Chromium and a chromedriver of the same version and set
    IMPACTS_CHROMIUM=/path/to/chromium IMPACTS_CHROMEDRIVER=/path/to/chromedriver"

# ---------------------------------------------------------------- 1. already done?
missing=$(missing_packages)
if [ -z "$missing" ] && [ "$(installed_version chromium)" = "$(installed_version chromium-driver)" ]; then
    log "chromium and chromium-driver $(installed_version chromium) already installed; nothing to do"
    exit 0
fi

# ---------------------------------------------------------------- 2. install
# chromium-driver pins chromium to its own version, so installing both at once also fixes a
# version mismatch (a held-back or half-upgraded chromium).
[ -n "$missing" ] || missing="${PACKAGES[*]}"
if [ "$(id -u)" != 0 ]; then
    die "missing or mismatched system packages: $missing
    install them first, e.g.:  sudo apt-get install -y --no-install-recommends ${PACKAGES[*]}"
fi
command -v apt-get >/dev/null 2>&1 || die "missing system packages ($missing) and no apt-get to install them"

log "installing: ${PACKAGES[*]}"
start=$SECONDS
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt/dpkg run (e.g. the PostgreSQL set-up) instead of failing on its lock.
APT=(apt-get -qq -o DPkg::Lock::Timeout=600)
"${APT[@]}" update
"${APT[@]}" install -y --no-install-recommends "${PACKAGES[@]}" >/dev/null

missing=$(missing_packages)
[ -z "$missing" ] || die "still missing after apt-get install: $missing"
[ "$(installed_version chromium)" = "$(installed_version chromium-driver)" ] ||
    die "chromium $(installed_version chromium) and chromium-driver $(installed_version chromium-driver) differ"

# ---------------------------------------------------------------- 3. verify
[ -x "$CHROMIUM" ] || CHROMIUM=$(command -v chromium) || die "no chromium binary after installing it"
[ -x "$CHROMEDRIVER" ] || die "no $CHROMEDRIVER after installing chromium-driver"
version=$("$CHROMIUM" --version 2>/dev/null) || die "$CHROMIUM --version failed"
log "checking: ${version% } renders a page headless"
profile=$(mktemp -d "${TMPDIR:-/tmp}/browser-check.XXXXXX")
trap 'rm -rf "$profile"' EXIT
dom=$(timeout 60 "$CHROMIUM" --headless=new --no-sandbox --disable-dev-shm-usage --disable-gpu \
    --user-data-dir="$profile" --dump-dom 'data:text/html,<p id="ok">chromium-ok</p>' 2>/dev/null) ||
    die "chromium did not start headless (try: $CHROMIUM --headless=new --no-sandbox --dump-dom about:blank)"
grep -q 'chromium-ok' <<<"$dom" || die "chromium started but did not render the test page"
log "$("$CHROMEDRIVER" --version | cut -d' ' -f1-2) ready ($((SECONDS - start)) s)"
