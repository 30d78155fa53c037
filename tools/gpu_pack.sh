#!/bin/bash
# Pack what tools/gpu_session.sh needs on a GPU machine into .gpu/ (ignored
# by git; carried by the device tool, 64 MiB at most with the tree): the
# release build (CUDA backend in), the shared libraries the binaries need that
# a bare CUDA image lacks, the training photographs shrunk to 272 px on the
# short side, the paintings, VGG19 and the two reference models.
set -eu
cd "$(dirname "$0")/.."
SHARED=${STYLIZE_SHARED:-../shared}
mkdir -p .gpu/shared/content/photos .gpu/shared/styles .gpu/shared/vgg19 .gpu/shared/models \
    .gpu/shared/media/kodak .gpu/lib .gpu/bin
cp "$SHARED"/README.md .gpu/shared/  # the tests' `shared` fixture looks for it
cp "$SHARED"/styles/*.jpg .gpu/shared/styles/
cp "$SHARED"/vgg19/* .gpu/shared/vgg19/
cp "$SHARED"/media/kodak/kodim01.png "$SHARED"/media/kodak/kodim05.png .gpu/shared/media/kodak/
cp "$SHARED"/models/*.pth "$SHARED"/models/LICENSE-pytorch-examples.txt .gpu/shared/models/
if [ -z "$(ls .gpu/shared/content/photos)" ]; then
    /usr/bin/python3 - "$SHARED" <<'PY'
import glob, os, sys
import cv2
for p in sorted(glob.glob(sys.argv[1] + "/content/photos/*")):
    img = cv2.imread(p)
    if img is None:
        continue
    h, w = img.shape[:2]
    s = 272 / min(h, w)
    if s < 1:
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    out = ".gpu/shared/content/photos/" + os.path.splitext(os.path.basename(p))[0] + ".jpg"
    cv2.imwrite(out, img, [cv2.IMWRITE_JPEG_QUALITY, 80])
PY
fi
cp build/bin/stylize-image build/bin/stylize-bench build/bin/ffmpeg .gpu/bin/
for lib in $(ldd build/bin/ffmpeg build/bin/stylize-image | awk '/=>/ {print $3}' | sort -u); do
    case "$(basename "$lib")" in libc.so*|libm.so*|libz.so*|libpthread*|libdl*) ;; *) cp "$lib" .gpu/lib/ ;; esac
done
(cd .gpu && tar cJf pack.tar.xz bin lib shared/models && rm -rf bin lib shared/models/*)
du -sh .gpu
