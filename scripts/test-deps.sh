#!/usr/bin/env bash
# System packages the end-to-end tests drive for real: nginx (a reverse proxy on loopback) and Chromium (the
# page, through Playwright), fonts-noto-cjk so that screenshots of the page show Chinese, Japanese and Korean, and
# redis-server (replicas sharing sessions, tests/replicas).
# Installs them with apt when they are missing and we are root (as in CI).
set -euo pipefail
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
[ -x /usr/bin/chromium ] || missing+=(chromium)
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
if [ ${#missing[@]} -eq 0 ]; then
  echo "test-deps: nginx, chromium, fonts-noto-cjk and redis-server are installed"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "test-deps: missing ${missing[*]}; install them (sudo apt-get install ${missing[*]}) for the e2e tests" >&2
  exit 1
fi
echo "test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian starts the packaged nginx on port 80; the tests start their own on free loopback ports.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now nginx >/dev/null 2>&1 || true; fi
pkill -x nginx 2>/dev/null || true
# Likewise the packaged redis-server on port 6379: the tests start their own on free loopback ports.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now redis-server >/dev/null 2>&1 || true; fi
echo "test-deps: installed ${missing[*]}"
