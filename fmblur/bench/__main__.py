"""`python -m fmblur.bench [images|video|load|training] [options]`: print benchmark tables."""

import sys

from fmblur.bench import images, load, training, video

BENCHMARKS = {"images": images.main, "video": video.main, "load": load.main, "training": training.main}

arguments = sys.argv[1:]
name = arguments.pop(0) if arguments and arguments[0] in BENCHMARKS else "images"
BENCHMARKS[name](arguments)
