"""The base of every error fastnet reports to its user as one line.

A FastnetError is a problem of the input, the host or the kernel's answer, with a message
that says what and where; the command line prints it and exits non-zero. Any other exception
is a bug, printed with its type (and with a traceback under FASTNET_DEBUG=1). It lives in the
lowest Python layer so that datapath/ and control/ share it without importing upwards.
"""
from __future__ import annotations


class FastnetError(RuntimeError):
    pass
