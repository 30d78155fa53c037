#!/bin/sh
# Obtain a pristine FFmpeg release tarball, verified by its pinned sha256.
#
#   tools/fetch_ffmpeg.sh [--tarball FILE] VERSION DEST_DIR
#
# VERSION is 7.1, 8.1 or 9.0 (the release line; the exact release is pinned
# below). The tarball ends up as DEST_DIR/ffmpeg-X.Y.Z.tar.xz and its path is
# printed on stdout. Nothing is downloaded when that file is already there
# with the right hash (DEST_DIR is a cache: the build uses BUILD/ffmpeg-dl).
#
# Where it comes from, in order:
#   1. --tarball FILE: a local copy, e.g. FFmpeg's own ffmpeg-X.Y.Z.tar.xz
#      or Debian's ffmpeg_X.Y.Z.orig.tar.xz (the same file);
#   2. the Debian archive that this machine's apt already uses: deb-src
#      entries for trixie and sid are derived from the URIs of the Debian
#      entry in /etc/apt/sources.list{,.d}; apt-get, with a private source
#      list, state and cache under DEST_DIR/apt (removed afterwards; nothing
#      system-wide is touched, root is not needed), prints the orig tarball's
#      URL, and apt's own downloader fetches it, checking the hash;
#   3. if that Debian version has left the archive: the same tarball under
#      pool/main/f/ffmpeg/ of the same archive.
# Debian's orig tarballs are byte-identical to the upstream release tarballs.
set -eu

prog=fetch_ffmpeg.sh
die() { echo "$prog: $*" >&2; exit 1; }
note() { echo "$prog: $*" >&2; }

tarball=
while [ $# -gt 0 ]; do
    case "$1" in
    --tarball) [ $# -ge 2 ] || die "--tarball needs a file"; tarball=$2; shift 2 ;;
    --tarball=*) tarball=${1#*=}; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option '$1'" ;;
    *) break ;;
    esac
done
[ $# -eq 2 ] || die "usage: $prog [--tarball FILE] VERSION DEST_DIR"
version=$1
dest=$2

# Pinned releases: upstream version, Debian source version, sha256.
case "$version" in
7.1) full=7.1.5; debver=7:7.1.5-0+deb13u1
     sha=de668509caf9e35e3cd162473441fdb29538c6d96ed080292b3cf9e6fc5d558f ;;
8.1) full=8.1.2; debver=7:8.1.2-2
     sha=464beb5e7bf0c311e68b45ae2f04e9cc2af88851abb4082231742a74d97b524c ;;
9.0) full=9.0.2; debver=7:9.0.2-4
     sha=8c3850283eb25fa026482078a04051e0be17347b09ef81a0849bec15a96e002e ;;
*) die "unsupported FFmpeg version '$version' (7.1, 8.1 or 9.0)" ;;
esac

mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
out=$dest/ffmpeg-$full.tar.xz

sha_of() { sha256sum "$1" | cut -d' ' -f1; }
have_good() { [ -f "$1" ] && [ "$(sha_of "$1")" = "$sha" ]; }

if have_good "$out"; then
    echo "$out"
    exit 0
fi
rm -f "$out"

# 1. A tarball given by the user.
if [ -n "$tarball" ]; then
    [ -f "$tarball" ] || die "$tarball: no such file"
    got=$(sha_of "$tarball")
    [ "$got" = "$sha" ] || die "$tarball: sha256 $got does not match FFmpeg $full ($sha)"
    cp "$tarball" "$out.tmp" && mv "$out.tmp" "$out"
    note "using $tarball (FFmpeg $full, sha256 verified)"
    echo "$out"
    exit 0
fi

# 2. Debian's archive, as configured on this machine.
{ command -v apt-get >/dev/null 2>&1 && [ -x /usr/lib/apt/apt-helper ]; } ||
    die "no apt on this machine: download ffmpeg-$full.tar.xz from FFmpeg's release page, check sha256 $sha, and pass it with ./configure --ffmpeg-tarball=FILE"

# The URIs and Signed-By of the Debian (non-security) entries, one "URI KEYRING"
# per line, from deb822 .sources files and from one-line .list files.
debian_uris() {
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '
            function flush() {
                if (types ~ /deb/ && suites !~ /-security/ && uris !~ /security/ && uris ~ /debian/) {
                    n = split(uris, u, /[ \t]+/)
                    for (i = 1; i <= n; i++) if (u[i] != "") print u[i], (key == "" ? "-" : key)
                }
                types = uris = suites = key = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            tolower($1) == "types:"     { sub(/^[^:]*:[ \t]*/, ""); types = $0; next }
            tolower($1) == "uris:"      { sub(/^[^:]*:[ \t]*/, ""); uris = $0; next }
            tolower($1) == "suites:"    { sub(/^[^:]*:[ \t]*/, ""); suites = $0; next }
            tolower($1) == "signed-by:" { sub(/^[^:]*:[ \t]*/, ""); key = ($0 ~ /^\// ? $0 : ""); next }
            END { flush() }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '
            $1 != "deb" && $1 != "deb-src" { next }
            {
                key = ""; i = 2
                if ($2 ~ /^\[/) {
                    for (; i <= NF; i++) {
                        if ($i ~ /^\[?signed-by=/) { k = $i; sub(/^\[?signed-by=/, "", k); sub(/\]$/, "", k); key = k }
                        if ($i ~ /\]$/) { i++; break }
                    }
                }
                uri = $i; suite = $(i + 1)
                if (uri ~ /debian/ && uri !~ /security/ && suite !~ /-security/) print uri, (key == "" ? "-" : key)
            }
        ' "$f"
    done
}

entries=$(debian_uris | awk '!seen[$1]++')
[ -n "$entries" ] ||
    die "no Debian archive entry in /etc/apt/sources.list{,.d}: download ffmpeg-$full.tar.xz from FFmpeg's release page (sha256 $sha) and pass it with ./configure --ffmpeg-tarball=FILE"

aptdir=$dest/apt
mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
list=$aptdir/sources.list
: >"$list"
echo "$entries" | while read -r uri key; do
    opt=
    [ "$key" != "-" ] && [ -f "$key" ] && opt=" [signed-by=$key]"
    for suite in trixie sid; do
        echo "deb-src$opt $uri $suite main" >>"$list"
    done
done

aptopts="-o Dir::Etc::SourceList=$list -o Dir::Etc::SourceParts=/dev/null
 -o Dir::State::Lists=$aptdir/lists -o Dir::Cache=$aptdir/cache
 -o Dir::State::Status=/dev/null -o Debug::NoLocking=1 -o APT::Sandbox::User=root
 -o Acquire::Languages=none"
[ "$(id -u)" = 0 ] || aptopts="$aptopts -o Dir::State=$aptdir"

fetch() { # URL
    /usr/lib/apt/apt-helper -o APT::Sandbox::User="$(id -un)" download-file "$1" "$out.tmp" "SHA256:$sha" >&2 &&
        have_good "$out.tmp" && mv "$out.tmp" "$out"
}

note "looking up ffmpeg $debver in the Debian archive (apt-get update with a private source list)"
urls=
# shellcheck disable=SC2086
if apt-get -q $aptopts update >&2; then
    # shellcheck disable=SC2086
    urls=$(apt-get -q $aptopts source --print-uris "ffmpeg=$debver" 2>/dev/null |
           sed -n "s/^'\([^']*ffmpeg_${full}\.orig\.tar\.xz\)'.*/\1/p")
else
    note "apt-get update failed; trying the archive's pool directly"
fi
rm -f "$out.tmp"
for url in $urls; do
    note "downloading $url"
    fetch "$url" && break
done
if ! have_good "$out"; then
    # 3. The pool path of the same archive(s).
    for uri in $(echo "$entries" | cut -d' ' -f1); do
        url=${uri%/}/pool/main/f/ffmpeg/ffmpeg_$full.orig.tar.xz
        note "downloading $url"
        fetch "$url" && break
    done
fi
rm -f "$out.tmp"
rm -rf "$aptdir"   # the package lists are not needed any more
have_good "$out" ||
    die "could not download FFmpeg $full from the Debian archive. Download ffmpeg-$full.tar.xz from FFmpeg's release page, check sha256 $sha, and pass it with ./configure --ffmpeg-tarball=FILE"
note "FFmpeg $full: $out (sha256 verified)"
echo "$out"
