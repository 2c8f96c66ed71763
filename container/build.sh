#!/bin/sh
# Build the image with whichever of docker, podman or buildah is present (`make image`,
# `make image-cuda`): container/build.sh [TARGET [TAG]], TARGET cpu (default) or cuda.
#
# The base, debian:bookworm-slim, is pulled as usual; where no registry can be reached and
# the tool is podman or buildah, the same Debian release is bootstrapped from the Debian
# archive instead (container/make-base.sh) and imported under the base's name.
# CONTAINER_TOOL=docker|podman|buildah picks the tool. The host's CA bundle (PIP_CERT, else
# SSL_CERT_FILE, REQUESTS_CA_BUNDLE or Debian's /etc/ssl/certs/ca-certificates.crt: it trusts a
# network that re-signs HTTPS) is passed to the pip steps as a build secret, never stored.
set -eu
target=${1:-cpu}
tag=${2:-hushdrop:latest}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
base=docker.io/library/debian:bookworm-slim

tool=${CONTAINER_TOOL:-}
if [ -z "$tool" ]; then
  for candidate in docker podman buildah; do
    # the docker client without a running engine does not count
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" info >/dev/null 2>&1; then
      tool=$candidate
      break
    fi
  done
fi
if [ -z "$tool" ]; then
  echo "make image: none of docker, podman or buildah works here; install one (Debian: apt-get install podman)" >&2
  exit 2
fi

secret=""
cert=${PIP_CERT:-${SSL_CERT_FILE:-${REQUESTS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}}}
if [ -n "$cert" ] && [ -f "$cert" ]; then
  secret="--secret id=pip-cert,src=$cert"
fi

have_base() {
  case $tool in
    podman) podman image exists "$base" ;;
    buildah) buildah inspect --type image "$base" >/dev/null 2>&1 ;;
    docker) docker image inspect "$base" >/dev/null 2>&1 ;;
  esac
}
if ! have_base && ! "$tool" pull "$base" >/dev/null 2>&1; then
  if [ "$tool" = docker ]; then
    echo "make image: docker cannot pull $base; pull it, or build with podman or buildah (they can bootstrap it)" >&2
    exit 2
  fi
  echo "make image: no registry answers for $base: bootstrapping Debian bookworm from the Debian archive" >&2
  CONTAINER_TOOL=$tool "$here/make-base.sh" "$base"
fi

echo "make image: building target $target as $tag with $tool" >&2
cd "$repo"
case $tool in
  docker)
    # shellcheck disable=SC2086
    DOCKER_BUILDKIT=1 docker build $secret --target "$target" -t "$tag" -f Containerfile . ;;
  podman)
    # docker format: OCI images have no HEALTHCHECK; chroot isolation builds where runc cannot
    # set rlimits (a container inside a container)
    # shellcheck disable=SC2086
    podman build --format docker --isolation "${ISOLATION:-chroot}" --layers $secret \
      --target "$target" -t "$tag" -f Containerfile . ;;
  buildah)
    # shellcheck disable=SC2086
    buildah build --format docker --isolation "${ISOLATION:-chroot}" --layers $secret \
      --target "$target" -t "$tag" -f Containerfile . ;;
esac
