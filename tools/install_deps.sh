#!/bin/sh
# Install everything stylize needs to build and test, from Debian's packages
# (Debian 12 or later, Ubuntu 22.04 or later). Run as root, or it prints the
# command to run. The codec and text libraries are those of the full FFmpeg
# profile (./configure --ffmpeg-profile=full, the default; see configure's
# list); ccache makes FFmpeg rebuilds cheap.
set -eu

PACKAGES="
  build-essential pkg-config
  libjson-c-dev libpng-dev libdnnl-dev
  nasm xz-utils libx264-dev libsdl2-dev zlib1g-dev ccache
  libx265-dev libvpx-dev libdav1d-dev libaom-dev libsvtav1enc-dev
  libopus-dev libvorbis-dev libmp3lame-dev libwebp-dev
  libfreetype-dev libfontconfig-dev libharfbuzz-dev libfribidi-dev libass-dev fonts-dejavu-core
  libzimg-dev libsoxr-dev libtheora-dev libspeex-dev libopenjp2-7-dev libxml2-dev
  libgnutls28-dev libbz2-dev liblzma-dev
  python3 python3-numpy python3-pil python3-onnx python3-pytest python3-torch
  python3-opencv python3-matplotlib python3-skimage
  clang libclang-rt-14-dev
  parallel openssh-server openssh-client valgrind procps
  slurm-wlm munge
"

missing=
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install_deps: everything is installed"
    exit 0
fi
echo "install_deps: installing:$missing"
if [ "$(id -u)" != 0 ]; then
    echo "install_deps: not root; run: sudo apt-get install -y$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
