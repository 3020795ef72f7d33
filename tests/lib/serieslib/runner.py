"""Entry point shared by the system tests: unittest with TAP output."""

import os
import signal
import sys
import unittest

SYSTEM_PYTHON = "/usr/bin/python3"


def main() -> None:
    """Run the calling module's unittest tests, printing TAP (pycotap).

    pycotap is a Debian package for the system python; if another python3
    comes first in PATH, re-run under the system one.  SIGTERM (e.g. a CI
    timeout) becomes SystemExit inside the running test, which unittest
    records as an error before it still runs the cleanups, so namespaces
    and QEMU processes are removed."""
    try:
        from pycotap import TAPTestRunner  # pylint: disable=import-outside-toplevel
    except ImportError:
        if os.path.realpath(sys.executable) != os.path.realpath(
                SYSTEM_PYTHON) and os.path.exists(SYSTEM_PYTHON):
            os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON] + sys.argv)
        print("Bail out! pycotap missing (apt-get install python3-pycotap)")
        sys.exit(1)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    unittest.main(module="__main__", testRunner=TAPTestRunner(),
                  buffer=False)
