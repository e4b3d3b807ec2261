#!/bin/sh
# Prepares a runtime stage (deploy/docker/Dockerfile): installs the packages
# named, adds the user the manifests run as (uid and gid 10001, runAsUser),
# and removes the package manager, so a process that breaks out of the
# service finds no way to install tools. dpkg's status file stays: image
# scanners read it.
set -eu
if [ $# -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
fi
groupadd --gid 10001 imgsearch
useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin imgsearch
rm -rf /usr/bin/apt /usr/bin/apt-* /usr/bin/dpkg /usr/bin/dpkg-* /usr/sbin/dpkg-* \
  /usr/lib/apt /usr/lib/dpkg /etc/apt /var/lib/apt /var/cache/apt /var/cache/debconf
