#!/usr/bin/env bash
# Sourced by the cluster build scripts: apt against another Debian suite without touching this
# system's apt state (private sources list, lists and cache under $WASMKUBE_TOOLS/apt/<suite>).
# Packages are only downloaded (`apt-get download`, `apt-get source --download-only`), never
# installed into this system.

: "${WASMKUBE_TOOLS:=/opt/wasmkube-tools}"

# The Debian mirror this machine uses (its deb822 sources), else deb.debian.org.
debian_mirror() {
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [[ -z $uri ]]; then
    uri=$(awk '$1 == "deb" && $2 !~ /^\[/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

# apt_suite SUITE ARGS...: apt-get with a private configuration for SUITE (binary and source
# entries), updated once a day.
apt_suite() {
  local suite=$1
  shift
  local dir=$WASMKUBE_TOOLS/apt/$suite
  local mirror
  mirror=$(debian_mirror)
  mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
  cat >"$dir/sources.list" <<EOT
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $suite main
EOT
  local opts=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o Dir::Etc::sourceparts=-
    -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
    -o Dir::State::status=/dev/null -o Debug::NoLocking=1 -o APT::Get::AllowUnauthenticated=false)
  if [[ ! -f $dir/updated ]] || [[ -n $(find "$dir/updated" -mmin +1440 2>/dev/null) ]]; then
    apt-get "${opts[@]}" update -qq >/dev/null
    touch "$dir/updated"
  fi
  apt-get "${opts[@]}" "$@"
}

# apt_cache_suite SUITE ARGS...: apt-cache with the same private configuration.
apt_cache_suite() {
  local suite=$1
  shift
  local dir=$WASMKUBE_TOOLS/apt/$suite
  apt-cache -o "Dir::Etc::sourcelist=$dir/sources.list" -o Dir::Etc::sourceparts=- \
    -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o Dir::State::status=/dev/null "$@"
}
