"""`python -m fmblur.bench [images] [options]`: print benchmark tables."""

import sys

from fmblur.bench import images

BENCHMARKS = {"images": images.main}

arguments = sys.argv[1:]
name = arguments.pop(0) if arguments and arguments[0] in BENCHMARKS else "images"
BENCHMARKS[name](arguments)
