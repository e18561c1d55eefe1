#!/bin/sh
# install-databases.sh installs the PostgreSQL and MariaDB servers that the
# real-engine tests of internal/rls start on loopback (Debian 12, as root).
#
# It is idempotent: when both server packages are already installed it does
# nothing and touches no package index. The tests start their own servers in
# temporary directories on free ports, so the clusters that the packages
# create and may start on 5432 and 3306 are neither needed nor used.
set -eu

packages="postgresql mariadb-server"

missing=""
for p in $packages; do
	status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
	case "$status" in
	*"install ok installed"*) ;;
	*) missing="$missing $p" ;;
	esac
done

if [ -z "$missing" ]; then
	echo "install-databases: already installed:$(printf ' %s' $packages)"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-databases: need root to install:$missing" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y --no-install-recommends $missing

echo "install-databases: installed:$missing"
for bin in /usr/lib/postgresql/*/bin/initdb /usr/sbin/mariadbd /usr/bin/mariadb-install-db; do
	ls -l "$bin" || { echo "install-databases: missing $bin after install" >&2; exit 1; }
done
