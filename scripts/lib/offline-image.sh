# What the image scripts (build-base-image, build-collector-image) share, sourced by them:
# the rootfs image `deepspark/rootfs:bookworm` (debootstrap from the host's Debian mirror,
# then `docker import`) and wheelhouses downloaded with `pip download` on the host for the
# image's Python, so that no image build reaches an internet registry. Each image carries a
# label with a hash of its inputs; a script skips what is up to date.
# The caller sets `set -euo pipefail` and runs from the repository root.

SUITE=bookworm        # its python3 is 3.11, the Python the wheelhouse is downloaded for
PY_VERSION=3.11
# libgomp1: the OpenMP runtime that paddlepaddle's CPU wheel links against (torch bundles its own)
PACKAGES=python3,python3-venv,ca-certificates,libgomp1
ROOTFS_IMAGE=deepspark/rootfs:$SUITE
ROOTFS_LABEL=org.deepspark.rootfs.inputs  # the hash of the inputs each image was built from
ARCH=$(uname -m)

started=$SECONDS
say() { echo "${0##*/}: [$((SECONDS - started))s] $*" >&2; }
die() { echo "${0##*/}: error: $*" >&2; exit 1; }
image_id() { docker image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }
size_of() {
    numfmt --to=si --round=nearest --format=%.2f --suffix=B \
        "$(docker image inspect -f '{{.Size}}' "$1")"
}
# The value of label $2 on image $1; empty if there is no such image.
label_of() {
    docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}
need_docker() {
    docker info >/dev/null 2>&1 || die "no Docker engine answers (scripts/docker-env starts one)"
}

# The mirror of the host's apt sources that serves $SUITE: deb822 *.sources stanzas or
# one-line `deb` entries.
host_mirror() {
    local files=() f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] || return 0
    awk -v suite="$SUITE" '
        function flush() {
            if (!found && ok && uri != "") { print uri; found = 1; exit }
            uri = ""; ok = 0
        }
        FNR == 1 { flush() }
        FILENAME ~ /\.sources$/ {
            if ($0 ~ /^[ \t]*$/) flush()
            else if (tolower($1) == "uris:") uri = $2
            else if (tolower($1) == "suites:") { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
            next
        }
        $1 == "deb" { sub(/ \[[^]]*\]/, ""); if ($3 == suite) { uri = $2; ok = 1; flush() } }
        END { flush() }
    ' "${files[@]}"
}
mirror=${DEEPSPARK_DEBIAN_MIRROR:-$(host_mirror)}
mirror=${mirror:-http://deb.debian.org/debian}

# Fill directory $1 with a minimal $SUITE that has python3. Its source is part of the
# rootfs key (declare -f prints the code without comments), so editing it rebuilds.
build_rootfs() {
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$1" "$mirror" \
        >"$work/debootstrap.log" 2>&1 || {
        tail -n 30 "$work/debootstrap.log" >&2
        die "debootstrap failed (log above)"
    }
    # Lean: no package lists, no downloaded .debs, no docs but the copyright files. The
    # build host's name and resolver do not belong in the image: the engine provides them.
    rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/usr/share/man/* \
        "$1"/usr/share/info/*
    find "$1"/usr/share/doc ! -type d ! -name copyright -delete
    rm -f "$1"/etc/hostname
    : >"$1"/etc/resolv.conf
}

# Download wheels for the image's Python and platform (not the host's) into directory $1:
# those that $REQUIREMENTS (a requirements file) needs. Part of each image's key.
fetch_wheels() {
    local python=${PYTHON:-python3}
    "$python" -m pip --version >/dev/null 2>&1 ||
        die "$python has no pip: install python3-pip, or set PYTHON=.venv/bin/python"
    # -qq: only errors (this host's pip config lists local indexes that warn per package).
    "$python" -m pip download -qq --disable-pip-version-check --only-binary=:all: \
        --python-version "$PY_VERSION" --implementation cp --abi "cp${PY_VERSION/./}" \
        --platform "manylinux_2_28_$ARCH" --platform "manylinux_2_17_$ARCH" \
        --platform "manylinux2014_$ARCH" \
        -c constraints.txt -r "$REQUIREMENTS" -d "$1"
}

rootfs_key=$(
    printf '%s\n' "$SUITE" "$ARCH" "$mirror" "$PACKAGES" "$(declare -f build_rootfs)" |
        sha256sum | cut -d' ' -f1
)
rootfs_up_to_date() { [ "$(label_of "$ROOTFS_IMAGE" "$ROOTFS_LABEL")" = "$rootfs_key" ]; }

# A scratch directory, $work, removed on exit (with anything debootstrap left mounted there).
make_work() {
    work=$(mktemp -d "${TMPDIR:-/var/tmp}/deepspark-$1.XXXXXX")
    trap cleanup EXIT
}
cleanup() {
    # debootstrap mounts /proc and /sys in the rootfs; a failure can leave them mounted.
    awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r |
        xargs -r umount -l
    rm -rf --one-file-system "$work"
}

# Build the rootfs image unless it is up to date ($1 non-empty: build it anyway). Needs $work.
ensure_rootfs() {
    if [ -z "$1" ] && rootfs_up_to_date; then
        say "$ROOTFS_IMAGE is up to date (inputs ${rootfs_key:0:12})"
        return
    fi
    [ "$(id -u)" = 0 ] || die "debootstrap and the rootfs import need root"
    command -v debootstrap >/dev/null || die "debootstrap is missing (scripts/docker-env installs it)"
    say "debootstrap $SUITE ($PACKAGES) from $mirror: a few minutes"
    build_rootfs "$work/rootfs"
    say "importing the rootfs as $ROOTFS_IMAGE"
    tar --numeric-owner -C "$work/rootfs" -c . | docker import \
        --change "LABEL $ROOTFS_LABEL=$rootfs_key" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["bash"]' \
        - "$ROOTFS_IMAGE" >/dev/null
    rm -rf --one-file-system "$work/rootfs"
}

# Remove the images (ids) that a build replaced, if nothing names them now and no image is
# built FROM them (then rmi refuses): a rebuild does not leave gigabytes behind.
remove_replaced() {
    local id
    for id in "$@"; do
        [ -n "$id" ] && [ "$(docker image inspect -f '{{len .RepoTags}}' "$id" 2>/dev/null)" = 0 ] &&
            docker rmi "$id" >/dev/null 2>&1 || true
    done
}
