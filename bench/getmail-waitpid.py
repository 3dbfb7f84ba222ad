#!/usr/bin/python3
"""Runs Debian's getmail6 (/usr/bin/getmail) with one bug fixed, for bench/throughput.ts.

getmail6 6.18.11 delivers each message in a forked child and waits for it through a SIGCHLD
handler and a threading.Condition (getmailcore/baseclasses.py, ForkingBase). The handler is
installed only after fork() returns, and the Condition is notified whether or not the parent
already waits: when the child exits first (likely on a busy machine), the wake-up is lost and
getmail sits out its whole `timeout` (180 s by default), then aborts the session with
"operation error (waiting child pid N timed out)" - over IMAP without expunging, so every
message of that session is delivered again on the next run. On this shared 2-core machine
that happened about once in 200 deliveries.

This wrapper replaces only the wait: a blocking os.waitpid() on the child, with the same exit
code handling. Everything else (retrieval, Maildir delivery in a child, deletion) is getmail's
own code. `--getmail-stock` in bench/throughput.ts runs /usr/bin/getmail unpatched instead.
"""
import os
import runpy
import sys

from getmailcore import baseclasses
from getmailcore.exceptions import getmailOperationError


def forkchild(self, childfun, with_out=True):
    self.child = child = baseclasses.Namespace()
    child.stdout = baseclasses.TemporaryFile23()
    child.stderr = baseclasses.TemporaryFile23()
    child.childpid = os.fork()
    if child.childpid != 0:  # the parent
        self.log.debug('spawned child %d\n' % child.childpid)
        _, status = os.waitpid(child.childpid, 0)
        if os.WIFSIGNALED(status):
            raise getmailOperationError('child pid %d killed by signal %d' % (child.childpid, os.WTERMSIG(status)))
        if not os.WIFEXITED(status):
            raise getmailOperationError('child pid %d failed to exit' % child.childpid)
        child.exitcode = os.WEXITSTATUS(status)
        child.stderr.seek(0)
        child.err = child.stderr.read().strip().decode()
        child.stdout.seek(0)
        if with_out:
            child.out = child.stdout.read().strip()
        return child
    childfun(child.stdout, child.stderr)  # the child: delivers, then exits


baseclasses.ForkingBase.forkchild = forkchild
sys.argv[0] = '/usr/bin/getmail'
runpy.run_path('/usr/bin/getmail', run_name='__main__')
