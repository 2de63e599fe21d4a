"""Where things are: build dir, source tree, scratch dir.

The `check` runner exports BP_BUILD, BP_SRC and BP_SCRATCH; when a test
file is run by hand the defaults are <repo>/build, the repo this file lives
in, and a fresh temporary directory.
"""

import atexit
import os
import shutil
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))

SRC = os.path.abspath(os.environ.get('BP_SRC')
                      or os.path.join(_HERE, '..', '..', '..'))
BUILD = os.path.abspath(os.environ.get('BP_BUILD')
                        or os.path.join(SRC, 'build'))


def _scratch():
    d = os.environ.get('BP_SCRATCH')
    if d:
        os.makedirs(d, exist_ok=True)
        return os.path.abspath(d)
    d = tempfile.mkdtemp(prefix='bp-iot-')
    if not os.environ.get('BP_KEEP_SCRATCH'):
        atexit.register(shutil.rmtree, d, True)
    return d


SCRATCH = _scratch()
