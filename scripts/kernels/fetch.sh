# shellcheck shell=bash
# shellcheck disable=SC2034 # QEMU_OPTS, VNG, ...: read by scripts/kernels.sh
# Sourced by scripts/kernels.sh: fetches, without installing anything, what
# the kernel runs need, into the cache ($cache):
#   apt/            a private apt configuration over Debian 12 (bookworm,
#                   bookworm-updates, bookworm-security; main; amd64)
#   kernel-<pkg>/   a kernel package unpacked (boot/vmlinuz-*, lib/modules/*)
#   tools-<ver>/    QEMU, kmod, busybox and libraries the host may lack,
#                   unpacked, with wrappers in wrap/
#   venv-virtme-ng-<ver>/  virtme-ng from PyPI
# The private apt configuration makes the same packages come out on any
# host that has Debian's archive keyring (Debian, or Ubuntu with the
# debian-archive-keyring package), whatever its own sources are.

# virtme-ng, pinned: scripts/kernels.sh's use of it (reports through
# --rwdir, its exit status ignored) was checked with this version.
VIRTME_NG_VERSION=1.42
DEBIAN_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
# QEMU for x86 (its accelerator modules are in qemu-system-common, its
# firmware in qemu-system-data, seabios, ipxe-qemu), the libraries Debian
# 12's QEMU 7.2 needs beyond a usual Debian host, kmod (depmod, modprobe:
# virtme-ng runs them over the kernel's modules) and a static busybox
# (virtme-ng builds an initramfs with it, to load the kernel's 9p modules).
# Unpacked together; run through wrappers (wrap/) that point
# LD_LIBRARY_PATH at the unpacked libraries for them alone.
TOOL_PACKAGES=(qemu-system-x86 qemu-system-common qemu-system-data seabios ipxe-qemu
  kmod libkmod2 busybox-static libcapstone4 libfdt1 libibverbs1 libpmem1 librdmacm1 libslirp0 libvdeplug2
  libndctl6 libdaxctl1 libnl-3-200 libnl-route-3-200)

die() { echo "kernels: $*" >&2; exit 2; }
: "${cache:?the cache folder, set by scripts/kernels.sh before sourcing this}"

# apt-get/apt-cache over the private configuration.
apt_private() {
  local tool=$1; shift
  "$tool" -o Dir::Etc::SourceList="$cache/apt/sources.list" \
    -o Dir::Etc::SourceParts=/dev/null -o Dir::Etc::Preferences=/dev/null \
    -o Dir::Etc::PreferencesParts=/dev/null \
    -o Dir::State="$cache/apt/state" -o Dir::State::status="$cache/apt/state/status" \
    -o Dir::Cache="$cache/apt/cache" -o APT::Architecture=amd64 \
    -o APT::Architectures::=amd64 -o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}

# The private package lists, refreshed when older than a day.
apt_lists() {
  [ -r "$DEBIAN_KEYRING" ] || die "no Debian archive keyring at $DEBIAN_KEYRING: install the debian-archive-keyring package"
  mkdir -p "$cache/apt/state/lists/partial" "$cache/apt/cache/archives/partial"
  touch "$cache/apt/state/status"
  cat >"$cache/apt/sources.list" <<SOURCES
deb [signed-by=$DEBIAN_KEYRING] http://deb.debian.org/debian bookworm main
deb [signed-by=$DEBIAN_KEYRING] http://deb.debian.org/debian bookworm-updates main
deb [signed-by=$DEBIAN_KEYRING] http://deb.debian.org/debian-security bookworm-security main
SOURCES
  [ -n "$(find "$cache/apt/updated" -mmin -1440 2>/dev/null)" ] || apt_refresh
}

apt_refresh() {
  echo "kernels: refreshing the package lists of Debian 12 (private, in $cache/apt)" >&2
  apt_private apt-get -qq update || die "apt-get update failed (network to deb.debian.org?)"
  touch "$cache/apt/updated"
}

# The newest unsigned generic kernel package of a series (6.1, 6.12).
kernel_package() {
  local series=$1 re
  case "$series" in
    6.1) re='^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' ;;
    *) re="^linux-image-${series//./\\.}\\.[0-9]+\\+deb12-amd64-unsigned\$" ;;
  esac
  apt_private apt-cache search --names-only "$re" | awk '{print $1}' | sort -V | tail -n1
}

# Downloads packages and unpacks them into $1 (the .debs are not kept).
# Status 1 when the download fails: the caller refreshes the lists (a
# security update takes the version day-old lists name off the mirror)
# and asks again.
fetch_unpack() {
  local root=$1; shift
  local debs="$root.debs" tmp="$root.partial"
  rm -rf "$debs" "$tmp" && mkdir -p "$debs" "$tmp"
  (cd "$debs" && apt_private apt-get -qq download "$@") || { rm -rf "$debs" "$tmp"; return 1; }
  local d
  for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$tmp" || die "cannot unpack $d"; done
  rm -rf "$debs"
  mv "$tmp" "$root"
}

# Prints the vmlinuz of a series, fetching its package if needed (over
# fresh lists on a second try).
fetch_kernel() {
  local series=$1 pkg root try
  for try in 1 2; do
    [ "$try" = 1 ] || apt_refresh
    pkg=$(kernel_package "$series")
    [ -n "$pkg" ] || die "no linux-image package for $series in Debian 12 (try 6.1 or 6.12)"
    root="$cache/kernel-$pkg"
    [ -d "$root" ] && break
    echo "kernels: fetching $pkg" >&2
    fetch_unpack "$root" "$pkg" && break
    [ "$try" = 1 ] || die "apt-get download $pkg failed (network to deb.debian.org?)"
  done
  local imgs=("$root"/boot/vmlinuz-*)
  [ -f "${imgs[0]}" ] || die "$pkg holds no boot/vmlinuz-*"
  echo "${imgs[0]}"
}

# Unpacks Debian 12's QEMU, kmod and busybox (TOOL_PACKAGES) into
# $cache/tools-<QEMU version>, writes its wrappers; prints that folder.
fetch_tools() {
  local ver root try
  for try in 1 2; do
    [ "$try" = 1 ] || apt_refresh
    ver=$(apt_private apt-cache show --no-all-versions qemu-system-x86 | awk '/^Version:/{print $2; exit}')
    [ -n "$ver" ] || die "no qemu-system-x86 in Debian 12's package lists"
    root="$cache/tools-${ver//[:~+]/_}"
    [ -d "$root" ] && break
    echo "kernels: fetching QEMU $ver and kmod" >&2
    fetch_unpack "$root" "${TOOL_PACKAGES[@]}" && break
    [ "$try" = 1 ] || die "apt-get download ${TOOL_PACKAGES[*]} failed (network to deb.debian.org?)"
  done
  local missing
  missing=$(LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu" ldd "$root/usr/bin/qemu-system-x86_64" "$root/bin/kmod" | grep 'not found' || true)
  [ -z "$missing" ] || die "the unpacked QEMU lacks libraries: $missing (add their packages to TOOL_PACKAGES in scripts/kernels/fetch.sh, then remove $root)"
  mkdir -p "$root/wrap"
  local libs="$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu" name real
  for name in qemu-system-x86_64 depmod modprobe; do
    real="$root/usr/bin/$name"
    [ "$name" = qemu-system-x86_64 ] || real="$root/bin/kmod"
    # QEMU_MODULE_DIR: QEMU's accelerator modules (tcg) come unpacked too.
    printf '#!/bin/bash\nQEMU_MODULE_DIR=%s LD_LIBRARY_PATH=%s exec -a %s %s "$@"\n' \
      "'$root/usr/lib/x86_64-linux-gnu/qemu'" "'$libs'" "$name" "'$real'" >"$root/wrap/$name"
    chmod +x "$root/wrap/$name"
  done
  echo "$root"
}

# Sets QEMU_BIN, QEMU_OPTS (firmware folders) and BUSYBOX, and puts depmod
# and modprobe on PATH:
# $SHM_KERNELS_QEMU when set (a qemu-system-x86_64; its own firmware),
# else Debian 12's QEMU, unpacked. depmod, modprobe: the host's, else
# Debian's kmod. BUSYBOX: a static busybox on PATH, else Debian's.
fetch_qemu() {
  QEMU_OPTS='' BUSYBOX=''
  local root=
  if command -v busybox >/dev/null && ! ldd "$(command -v busybox)" >/dev/null 2>&1; then
    BUSYBOX=$(command -v busybox)
  fi
  if [ -z "${SHM_KERNELS_QEMU:-}" ] || [ -z "$BUSYBOX" ] || ! command -v depmod >/dev/null || ! command -v modprobe >/dev/null; then
    root=$(fetch_tools) || exit 2
    # Last on PATH: the host's depmod wins where there is one.
    export PATH="$PATH:$root/wrap"
    [ -n "$BUSYBOX" ] || BUSYBOX="$root/bin/busybox"
  fi
  if [ -n "${SHM_KERNELS_QEMU:-}" ]; then
    QEMU_BIN=$SHM_KERNELS_QEMU
    [ -x "$QEMU_BIN" ] || die "SHM_KERNELS_QEMU=$QEMU_BIN is not an executable"
  else
    QEMU_BIN="$root/wrap/qemu-system-x86_64"
    # Debian's QEMU looks for firmware in /usr/share/qemu, /usr/share/seabios
    # and /usr/lib/ipxe/qemu: the unpacked ones go first.
    QEMU_OPTS="-L $root/usr/share/qemu -L $root/usr/share/seabios -L $root/usr/lib/ipxe/qemu"
  fi
}

# Sets VNG: virtme-ng from PyPI in a venv of its own.
fetch_vng() {
  local venv="$cache/venv-virtme-ng-$VIRTME_NG_VERSION"
  if [ ! -x "$venv/bin/vng" ]; then
    echo "kernels: installing virtme-ng $VIRTME_NG_VERSION from PyPI into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (install python3-venv)"
    "$venv/bin/pip" install -q "virtme-ng==$VIRTME_NG_VERSION" || die "pip install virtme-ng==$VIRTME_NG_VERSION failed"
  fi
  VNG="$venv/bin/vng"
}
