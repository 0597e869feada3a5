"""`python -m fmblur.bench [images|video] [options]`: print benchmark tables."""

import sys

from fmblur.bench import images, video

BENCHMARKS = {"images": images.main, "video": video.main}

arguments = sys.argv[1:]
name = arguments.pop(0) if arguments and arguments[0] in BENCHMARKS else "images"
BENCHMARKS[name](arguments)
