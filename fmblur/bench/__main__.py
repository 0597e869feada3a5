"""`python -m fmblur.bench [images|video|load] [options]`: print benchmark tables."""

import sys

from fmblur.bench import images, load, video

BENCHMARKS = {"images": images.main, "video": video.main, "load": load.main}

arguments = sys.argv[1:]
name = arguments.pop(0) if arguments and arguments[0] in BENCHMARKS else "images"
BENCHMARKS[name](arguments)
