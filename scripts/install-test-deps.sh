#!/usr/bin/env bash
# Installs what the test suite needs on a Debian machine, if missing:
# swaks and Debian's python3 (for smtplib) for the end-to-end tests, and
# Postfix and Dovecot, the real peers `postern audit` is tested against; isync's mbsync,
# the IMAP sync client internal/imapd is tested with; fetchmail, the POP3
# client test/pop3_test.go downloads with; dkimpy (python3-dkim, with
# python3-nacl for Ed25519), which internal/msgauth checks its DKIM against;
# nmap, whose smtp-*, imap-brute and pop3-brute scripts test/nmap_test.go
# runs against the server.
set -euo pipefail
need=()
command -v swaks >/dev/null 2>&1 || need+=(swaks)
[ -x /usr/bin/python3 ] || command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v fetchmail >/dev/null 2>&1 || need+=(fetchmail)
[ -x /usr/sbin/postfix ] || command -v postfix >/dev/null 2>&1 || need+=(postfix)
command -v mbsync >/dev/null 2>&1 || need+=(isync)
command -v nmap >/dev/null 2>&1 || need+=(nmap)
[ -x /usr/lib/dovecot/imap ] || need+=(dovecot-imapd)
[ -x /usr/lib/dovecot/pop3 ] || need+=(dovecot-pop3d)
/usr/bin/python3 -c 'import dkim, nacl' >/dev/null 2>&1 || need+=(python3-dkim python3-nacl)
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		SUDO=sudo
	else
		SUDO=
	fi
	echo "installing test tools: ${need[*]}"
	# Postfix asks which setup to install: none; the tests configure their own.
	echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
