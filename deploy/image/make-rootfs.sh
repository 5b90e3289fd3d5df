#!/bin/sh
# Runs in the image's builder stage. Lays out the runtime root file system in DEST:
# the given programs, the shared libraries they load (their ldd closure, nothing else:
# no shell, no package manager, no compiler), an ld.so cache, the Debian copyright
# files of the packages those libraries come from, and passwd/group entries for root
# and the unprivileged user 65532 that the exporter runs as.
# Usage: make-rootfs.sh DEST PROGRAM...
set -eu
dest=$1; shift
mkdir -p "$dest/usr/bin" "$dest/etc" "$dest/usr/share/doc" "$dest/run/cryptnono"
libs=$(mktemp)
for prog in "$@"; do
  install -m 0755 "$prog" "$dest/usr/bin/"
  strip --strip-unneeded "$dest/usr/bin/$(basename "$prog")"
  # "name => /path (addr)", "/lib64/ld-linux-x86-64.so.2 (addr)"; skip the vDSO.
  ldd "$prog" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' >>"$libs"
  if ldd "$prog" | grep -q 'not found'; then
    echo "make-rootfs: $prog has unresolved libraries:" >&2; ldd "$prog" >&2; exit 1
  fi
done
# Debian's merged /usr: /lib and /lib64 are links into /usr. Keep them so the paths the
# programs ask for (e.g. /lib64/ld-linux-x86-64.so.2) resolve, with one copy of each file.
for d in lib lib64; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$dest/$d"; fi
done
sort -u "$libs" | while read -r lib; do
  real=$(readlink -f "$lib")
  mkdir -p "$dest$(dirname "$real")"
  cp "$real" "$dest$real"
  # The name asked for, when it is itself a link (libbpf.so.1 -> libbpf.so.1.1.2).
  named="$(readlink -f "$(dirname "$lib")")/$(basename "$lib")"
  if [ "$named" != "$real" ] && [ ! -e "$dest$named" ] && [ ! -L "$dest$named" ]; then
    mkdir -p "$dest$(dirname "$named")"
    cp -P "$named" "$dest$named"
  fi
  pkg=$(dpkg -S "$real" 2>/dev/null | head -n1 | cut -d: -f1) || true
  if [ -z "$pkg" ]; then
    pkg=$(dpkg -S "$named" 2>/dev/null | head -n1 | cut -d: -f1) || true
  fi
  if [ -n "$pkg" ] && [ -f "/usr/share/doc/$pkg/copyright" ]; then
    mkdir -p "$dest/usr/share/doc/$pkg"
    cp "/usr/share/doc/$pkg/copyright" "$dest/usr/share/doc/$pkg/"
  fi
done
rm -f "$libs"
ldconfig -r "$dest"
printf 'root:x:0:0:root:/:/nonexistent\ncryptnono:x:65532:65532:cryptnono:/:/nonexistent\n' >"$dest/etc/passwd"
printf 'root:x:0:\ncryptnono:x:65532:\n' >"$dest/etc/group"
# The socket directory exists in the image too, so a plain `podman run` works without
# a volume; in Kubernetes an emptyDir shared by the pod's containers is mounted here.
chmod 0755 "$dest/run/cryptnono"
