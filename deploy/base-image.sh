#!/bin/sh
# base-image.sh [IMAGE] — makes sure the Docker base image (default
# debian:bookworm-slim) exists locally. When it is missing and cannot be
# pulled (a machine without a container registry), it is built here with
# `debootstrap --variant=minbase bookworm` from the Debian mirror this
# machine's apt already uses, read from its apt configuration at run time,
# and `docker import`ed under that name. Idempotent: a second run does nothing.
set -eu
image=${1:-debian:bookworm-slim}

if docker image inspect "$image" >/dev/null 2>&1; then
    echo "base-image: $image present"
    exit 0
fi
if [ "${JOBGATE_BASE_PULL:-0}" = 1 ] && docker pull "$image"; then
    exit 0
fi

# apt_deb_lines prints "URI SUITE" for every enabled deb source of a
# bookworm suite with component main, from the one-line and the deb822
# formats.
apt_deb_lines() {
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$file" ] || continue
        # deb [opts] URI SUITE COMPONENTS...
        sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$file" | awk '
            $1 == "deb" && $3 ~ /^bookworm/ {
                for (i = 4; i <= NF; i++) if ($i == "main") { print $2, $3; break }
            }'
    done
    for file in /etc/apt/sources.list.d/*.sources; do
        [ -r "$file" ] || continue
        awk '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && enabled != "no" && comps ~ /(^| )main( |$)/) {
                    n = split(uris, u, " "); m = split(suites, s, " ")
                    for (i = 1; i <= n; i++) for (j = 1; j <= m; j++)
                        if (s[j] ~ /^bookworm/) print u[i], s[j]
                }
                types = uris = suites = comps = enabled = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
              if (key == "types") types = $0; else if (key == "uris") uris = $0
              else if (key == "suites") suites = $0; else if (key == "components") comps = $0
              else if (key == "enabled") enabled = tolower($0) }
            END { flush() }' "$file"
    done
}

mirror=$(apt_deb_lines | awk '$2 == "bookworm" { print $1; exit }')
if [ -z "$mirror" ]; then
    echo "base-image: no 'deb URI bookworm main' source in the apt configuration;" \
         "set MIRROR or pull $image" >&2
    [ -n "${MIRROR:-}" ] || exit 1
fi
mirror=${MIRROR:-$mirror}

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "base-image: installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap \
        || { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -q --no-install-recommends debootstrap; }
fi

dir=$(mktemp -d /tmp/jobgate-rootfs.XXXXXX)
trap 'rm -rf "$dir"' EXIT INT TERM
echo "base-image: debootstrap --variant=minbase bookworm from $mirror"
debootstrap --variant=minbase bookworm "$dir" "$mirror" >"$dir.log" 2>&1 || {
    tail -20 "$dir.log" >&2; rm -f "$dir.log"; exit 1; }
rm -f "$dir.log"

# The image's apt sources: the same bookworm suites this machine uses.
apt_deb_lines | sort -u | while read -r uri suite; do
    echo "deb $uri $suite main"
done >"$dir/etc/apt/sources.list"
# Slim like the official -slim images: no docs, man pages or locales from
# later installs, and none left from debootstrap.
cat >"$dir/etc/dpkg/dpkg.cfg.d/docker-slim" <<'SLIM'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
SLIM
cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'CLEAN'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
APT::Install-Recommends "false";
CLEAN
find "$dir/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
rm -rf "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/var/cache/apt/archives/*.deb \
       "$dir"/var/cache/apt/*.bin "$dir"/var/lib/apt/lists/* "$dir"/var/log/*.log \
       "$dir"/var/cache/debconf/*-old
find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + \
    2>/dev/null || true

tar -C "$dir" -c . | docker import -c 'CMD ["bash"]' - "$image" >/dev/null
echo "base-image: imported $image ($(docker image inspect -f '{{.Size}}' "$image" \
    | awk '{ printf "%.0f MB", $1 / 1e6 }'))"
