#!/usr/bin/env bash
# Installs what the test suite needs on a Debian machine, if missing:
# swaks and Debian's python3 (for smtplib) for the end-to-end tests.
set -euo pipefail
need=()
command -v swaks >/dev/null 2>&1 || need+=(swaks)
[ -x /usr/bin/python3 ] || command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		SUDO=sudo
	else
		SUDO=
	fi
	echo "installing test tools: ${need[*]}"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
