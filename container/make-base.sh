#!/bin/sh
# Make debian:bookworm-slim where no container registry can be reached: debootstrap the same
# Debian release (minbase) from the Debian archive, trim it as the slim image is trimmed (no
# documentation, manual pages or translations), and import it under the base's name.
# Needs root, debootstrap and podman or buildah. container/make-base.sh [NAME]
set -eu
name=${1:-docker.io/library/debian:bookworm-slim}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
tool=${CONTAINER_TOOL:-podman}
if [ "$(id -u)" != 0 ]; then
  echo "make-base: debootstrap needs root; run as root, or pull $name from a registry" >&2
  exit 2
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "make-base: debootstrap is missing (Debian: apt-get install debootstrap)" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 5 "$work/debootstrap.log" >&2
  echo "make-base: debootstrap of bookworm from $mirror failed (log above)" >&2
  exit 1
fi
# as the slim image: no docs, man pages or translations in any package installed later
cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
CFG
# as the slim image: apt keeps no package cache
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/*/changelog* \
  "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log "$root"/var/log/apt/*
case $tool in
  podman)
    tar --numeric-owner -C "$root" -c . | podman import --change 'CMD ["bash"]' - "$name" >/dev/null ;;
  buildah)
    ctr=$(buildah from scratch)
    mnt=$(buildah mount "$ctr")
    tar --numeric-owner -C "$root" -c . | tar --numeric-owner -C "$mnt" -x
    buildah umount "$ctr" >/dev/null
    buildah config --cmd bash "$ctr"
    buildah commit --quiet "$ctr" "$name" >/dev/null
    buildah rm "$ctr" >/dev/null ;;
  *)
    echo "make-base: importing needs podman or buildah, not $tool" >&2
    exit 2 ;;
esac
echo "make-base: $name made from Debian bookworm ($mirror)" >&2
