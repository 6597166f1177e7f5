# -*- coding: utf-8 -*-
"""The error type console calls of the tool library raise.

Tools of the original catch it by name (``from AutoExecError import AutoExecError``); ``str()`` gives
the message as the original showed it (quoted, as ``repr`` of the value).
"""


class AutoExecError(RuntimeError):
    def __init__(self, value):
        RuntimeError.__init__(self, value)
        self.value = value

    def __str__(self):
        return repr(self.value)
