"""Test harness for blockpoint iotests (Python 3 stdlib only).

Modules:
  env     BUILD / SRC / SCRATCH locations (from BP_BUILD, BP_SRC,
          BP_SCRATCH set by the `check` runner)
  proc    find binaries (ours/real), run with timeouts, daemons on unix
          sockets, sanitizer-report detection
  case    IotestCase base class and requires_* skip decorators
  qcow2   byte-level qcow2 inspector/poker
  runner  per-file unittest runner used by `check` (writes JSON results)
  qmp     QMP client (separate owner); nbd will come later

Typical test:  from harness import IotestCase, proc, qcow2
"""

from . import env, proc, qcow2
from .case import (IotestCase, requires_ours, requires_real,
                   requires_module)
from .proc import ours, real, run, start_daemon

__all__ = ['env', 'proc', 'qcow2', 'IotestCase', 'requires_ours',
           'requires_real', 'requires_module', 'ours', 'real', 'run',
           'start_daemon']
