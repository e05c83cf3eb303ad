# dhcp-hive-mind: build, test and demo entry points (GNU make, Debian/Ubuntu).
# Runs as root, or with sudo for the apt and namespace steps.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
SBIN_PATH := $(PATH):/usr/sbin:/sbin

# command:package pairs; a package is installed only when its command is missing.
DEMO_NEEDS := tshark:tshark tcpdump:tcpdump
TEST_NEEDS := $(DEMO_NEEDS) redis-server:redis-server kea-dhcp4:kea-dhcp4-server \
	perfdhcp:kea-admin dhcrelay:isc-dhcp-relay dhclient:isc-dhcp-client ip:iproute2 tmux:tmux \
	setcap:libcap2-bin systemd-analyze:systemd \
	dhcpd:isc-dhcp-server dnsmasq:dnsmasq-base promtool:prometheus

have = $(shell PATH="$(SBIN_PATH)" command -v $(1) 2>/dev/null)
missing = $(strip $(foreach pair,$(1),$(if $(call have,$(firstword $(subst :, ,$(pair)))),,$(lastword $(subst :, ,$(pair))))) \
	$(if $(wildcard $(VENV)/bin/python)$(shell python3 -c 'import ensurepip, venv' 2>/dev/null && echo ok),,python3-venv))

# Installs its arguments non-interactively, without starting their services (policy-rc.d
# answers "no" to invoke-rc.d and deb-systemd-invoke), then disables the services of the
# packages installed here (systemd also stops its unit). dnsmasq-base is the bare binary, with
# no service that would take ports 53 and 67 on the host. Nothing is killed by name: that, like
# kea's init script "stop", would hit other kea-dhcp4 or redis-server processes on the machine.
define APT_INSTALL
export DEBIAN_FRONTEND=noninteractive
echo "apt: installing $$*"
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
made_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  made_policy=1
fi
trap '[ -z "$$made_policy" ] || rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$$@" </dev/null
for pkg in "$$@"; do
  case "$$pkg" in
    redis-server|kea-dhcp4-server|isc-dhcp-relay|isc-dhcp-server|prometheus)
      if [ -d /run/systemd/system ]; then
        systemctl disable --now "$$pkg" || true
      elif [ -x "/etc/init.d/$$pkg" ]; then
        update-rc.d "$$pkg" disable >/dev/null 2>&1 || true
      fi ;;
  esac
done
endef
export APT_INSTALL

# $(call apt_install,NEEDS): install what is missing, or nothing (and no apt-get update).
apt_install = $(if $(call missing,$(1)),$(SUDO) bash -euo pipefail -c "$$APT_INSTALL" apt-install $(call missing,$(1)),@echo "apt: nothing to install")

# Where `make install` puts things; each can be moved (the unit is rewritten to match).
PREFIX ?= /opt/dhcp-hive-mind
BINDIR ?= /usr/local/bin
CONFDIR ?= /etc/dhcp-hive-mind
UNITDIR ?= /etc/systemd/system
SYSUSERSDIR ?= /etc/sysusers.d

.PHONY: help demo test lint pcaps clean deps-demo deps-test install uninstall

help:
	@echo "make demo    install tshark, tcpdump and the project in $(VENV), replay pcaps/, list"
	@echo "             the leases"
	@echo "make install install tshark, tcpdump, the program (a virtualenv in $(PREFIX), the command in"
	@echo "             $(BINDIR)), the systemd unit and $(CONFDIR)/config.toml (root)"
	@echo "make uninstall  remove what make install put in place, except the settings"
	@echo "make test    install the test tools, then ruff, mypy and pytest"
	@echo "make lint    ruff and mypy"
	@echo "make pcaps   re-record pcaps/ in the network-namespace lab (root)"
	@echo "make clean   remove $(VENV) and caches"

deps-demo:
	$(call apt_install,$(DEMO_NEEDS))

deps-test:
	$(call apt_install,$(TEST_NEEDS))

$(VENV)/bin/python:
	python3 -m venv $(VENV)

# Stamps keyed on pyproject.toml: a second run installs nothing unless dependencies changed.
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

# HIVE_CONFIG=/dev/null: the demo's leases go to the embedded store, never to the Redis that an
# installed configuration file names.
demo: export HIVE_CONFIG := /dev/null
demo: deps-demo $(VENV)/.installed
	$(VENV)/bin/dhcp-hive-mind replay pcaps/*.pcap pcaps/*.pcapng --allow-server 192.0.2.1
	$(VENV)/bin/dhcp-hive-mind leases

lint: $(VENV)/.installed-test
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/mypy || status=1; \
	exit $$status

# Every step runs even after a failure, so one CI log shows them all. pytest's exit code 5
# (no tests collected) is a failure too.
test: deps-test $(VENV)/.installed-test
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/mypy || status=1; \
	$(VENV)/bin/pytest -p no:cacheprovider || { \
		[ $$? -ne 5 ] || echo "pytest collected no tests" >&2; status=1; }; \
	exit $$status

# The project is built from a copy, so that no build files owned by root stay in the clone.
# An existing config.toml is kept: it is the administrator's.
install: deps-demo
	python3 -m venv $(PREFIX)
	src=$$(mktemp -d) && trap 'rm -rf "$$src"' EXIT && \
		cp -r pyproject.toml README.md LICENSE sniffer "$$src" && \
		$(PREFIX)/bin/python -m pip install -q --upgrade "$$src"
	install -d $(BINDIR)
	ln -sfn $(PREFIX)/bin/dhcp-hive-mind $(BINDIR)/dhcp-hive-mind
	sed -e 's|/opt/dhcp-hive-mind|$(PREFIX)|g' -e 's|/usr/local/bin/|$(BINDIR)/|g' \
		-e 's|/etc/dhcp-hive-mind/|$(CONFDIR)/|g' contrib/dhcp-hive-mind.service \
		| install -D -m 644 /dev/stdin $(UNITDIR)/dhcp-hive-mind.service
	install -D -m 644 contrib/dhcp-hive-mind.sysusers $(SYSUSERSDIR)/dhcp-hive-mind.conf
	if [ -e $(CONFDIR)/config.toml ]; then echo "kept $(CONFDIR)/config.toml"; \
	else install -D -m 644 contrib/config.toml $(CONFDIR)/config.toml; fi

uninstall:
	rm -f $(UNITDIR)/dhcp-hive-mind.service $(SYSUSERSDIR)/dhcp-hive-mind.conf
	rm -f $(BINDIR)/dhcp-hive-mind
	rm -rf $(PREFIX)
	@echo "kept $(CONFDIR) (the settings)"

pcaps: deps-test
	$(SUDO) python3 pcaps/record.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist *.egg-info
	find . \( -name .git -o -name .venv \) -prune -o -name __pycache__ -type d -prune \
		-exec rm -rf {} +
