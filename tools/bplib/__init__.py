"""Support library of tools/bp-backup and scripts/demo.py.

Python 3 standard library only, plus the `nbd` module of python3-libnbd
where NBD is spoken.  Modules:

  errors     BackupError: expected failures, printed without a traceback
  qmp        tiny QMP client (unix socket, JSON, events kept aside)
  nbdsrc     NBD connection: open by URI or socket, meta contexts,
             block-status walks within the protocol limits, reads
  sidecar    the increment/full-backup sidecar format (JSON) and its checks
  fileio     sparse-aware file helpers and atomic output files
  progress   progress lines on stderr
  commands   the bp-backup subcommands (full, incremental, restore, verify)
"""
