# -*- coding: utf-8 -*-
"""The Tagent client class tools use (``TagentClient.TagentClient(host, port, password, ...)``) with
the original's method names and results, on top of autoexec's own Tagent client.

Unlike the other core modules this one needs the ``autoexec`` package (its protocol code and RC4),
so a tool importing it must run under the python3 autoexec is installed in. Results follow the
original: ``execCmd`` returns the command's exit status (-1 when the agent reported an error, whose
lines go to the callback as ``ERROR:`` lines), ``execCmdAsync``/``upload``/``download``/``writeFile``/
``transFile`` return 0, connection and credential problems raise :class:`AgentError`/:class:`AuthError`.
"""
import locale
import os
import platform
import shutil
import tempfile
from urllib.request import urlopen

try:
    from autoexec.transports import tagent_client as _tagent
except ImportError as ex:  # the tool runs under a python3 without autoexec
    raise ModuleNotFoundError("No module named 'autoexec' (TagentClient uses autoexec's Tagent client: run the tool "
                              "with the python3 autoexec is installed in); {}".format(ex), name='autoexec') from None


class _ValueError(RuntimeError):
    def __init__(self, value):
        RuntimeError.__init__(self, value)
        self.value = value

    def __str__(self):
        return repr(self.value)


class AuthError(_ValueError):
    pass


class ExecError(_ValueError):
    pass


class AgentError(_ValueError):
    pass


class TagentClient(object):
    def __init__(self, host='', port='', password='', connectTimeout=300, readTimeout=3600, writeTimeout=300,
                 execTimeout=86400, agentCharset=None):
        self.host = host or '127.0.0.1'
        self.port = int(port or 3939)
        self.password = password
        self.connectTimeout = connectTimeout
        self.readTimeout = readTimeout
        self.writeTimeout = writeTimeout
        self.execTimeout = execTimeout
        self.agentCharset = agentCharset
        self.agentOsType = None
        self.ostype = 'windows' if platform.system().lower() == 'windows' else 'unix'
        self.charset = locale.getpreferredencoding(False) or 'UTF-8'
        self.sock = None

    # -- connection -----------------------------------------------------------------------------------
    def _client(self, host=None, port=None, password=None):
        return _tagent.TagentClient(host or self.host, int(port or self.port),
                                    self.password if password is None else password,
                                    connect_timeout=float(self.connectTimeout or 60),
                                    read_timeout=float(self.readTimeout or 3600),
                                    write_timeout=float(self.writeTimeout or 60), charset=self.agentCharset)

    def _learn(self, client):
        if client.info is not None:
            self.agentCharset = self.agentCharset or client.info.charset
            self.agentOsType = 'windows' if client.info.is_windows else 'unix'

    def _run(self, client, action, *args, _remote=AgentError, **kwargs):
        """Call ``action`` mapping autoexec's errors to the original's exception types (an error the
        agent reported becomes ``_remote``)."""
        try:
            return action(*args, **kwargs)
        except _tagent.TagentRemoteError as ex:
            raise _remote('{}'.format(ex)) from None
        except _tagent.TagentAuthError:
            raise AuthError('ERROR: Authenticate failed while connect to {}:{}, check the credential.'.format(
                client.host, client.port)) from None
        except (_tagent.TagentError, OSError) as ex:
            raise AgentError('ERROR: {}:{} {}'.format(client.host, client.port, ex)) from None
        finally:
            self._learn(client)

    def getConnection(self, isVerbose=0, host=None, port=None, password=None):
        """Connect and authenticate; the open connection is kept until :meth:`close`."""
        client = self._client(host, port, password)
        self.close()
        self.sock = self._run(client, client.connect)
        if isVerbose == 1:
            print('INFO: Connect to {}:{} success.'.format(client.host, client.port))
        return self.sock

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def updateCred(self, cred, isVerbose=0):
        client = self._client()
        self._run(client, client.update_cred, cred)
        return 0

    def reload(self, isVerbose=0):
        client = self._client()
        self._run(client, client.reload)
        return 0

    # -- commands -------------------------------------------------------------------------------------
    def echo(self, user, data, isVerbose=0):
        client = self._client()
        print(self._run(client, client.echo, data))

    def execCmd(self, user, cmd, isVerbose=0, env=None, eofStr='', callback=None, cbparams=(), execTimeout=None):
        """Run ``cmd`` as ``user``; each output line (bytes in the agent's charset, newline kept) goes
        to ``callback(line, *cbparams)`` and is printed with ``isVerbose=1``. Returns the exit status."""
        client = self._client()

        def on_line(text):
            if isVerbose == 1:
                print(text)
            if callback is not None:
                callback((text + '\n').encode(client.codec, 'replace'), *cbparams)

        timeout = execTimeout if execTimeout is not None else self.execTimeout
        try:
            return self._run(client, client.execmd, cmd.strip(), on_line, env=env, timeout=int(timeout or 0),
                             eof_regex=eofStr or '', user=user, _remote=ExecError)
        except ExecError as ex:  # the agent ran into an error: reported as the command's output
            on_line('ERROR: {}'.format(ex.value))
            return -1

    def getCmdOut(self, user, cmd, isVerbose=0):
        """The command's output lines (decoded); AgentError with them when it fails."""
        lines = []
        status = self.execCmd(user, cmd, isVerbose,
                              callback=lambda line: lines.append(line.decode(self.agentCharset or 'utf-8', 'replace')))
        if status != 0:
            raise AgentError(''.join(lines))
        return lines

    def execCmdAsync(self, user, cmd, isVerbose=0, env=None, execTimeout=None):
        client = self._client()
        timeout = execTimeout if execTimeout is not None else self.execTimeout
        try:
            self._run(client, client.execmd_async, cmd.strip(), env=env, timeout=int(timeout or 0), user=user)
        except AgentError as ex:
            if isVerbose == 1:
                print('ERROR: {}'.format(ex.value))
            return -1
        if isVerbose == 1:
            print('INFO: Launch command asynchronized succeed.')
        return 0

    # -- files ----------------------------------------------------------------------------------------
    def download(self, user, src, dest, isVerbose=0, followLinks=0, convertCharset=0):
        """Fetch file or directory ``src`` from the agent into ``dest``; 0 on success."""
        client = self._client()
        client.user = user
        kind = self._run(client, client.download, src.replace('\\', '/'), dest.replace('\\', '/'))
        if isVerbose == 1:
            print('INFO: Download {} {} to {} success.'.format(kind, src, dest))
        return 0

    def upload(self, user, src, dest, isVerbose=0, convertCharset=0, followLinks=1, dirCreate=False):
        """Send a local file, a directory (its contents, or itself with ``dirCreate``) or the
        document at an http(s) URL to ``dest`` on the agent; 0 on success."""
        client = self._client()
        client.user = user
        dest = dest.replace('\\', '/')
        if src.startswith(('http://', 'https://')):
            workdir = tempfile.mkdtemp(prefix='tagent-url-')
            try:
                local = os.path.join(workdir, os.path.basename(src.split('?', 1)[0].rstrip('/')) or 'download')
                with urlopen(src, timeout=float(self.readTimeout or 3600)) as resp, open(local, 'wb') as fh:
                    shutil.copyfileobj(resp, fh)
                self._run(client, client.upload_file, local, dest, convert_text=convertCharset == 1)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        elif os.path.isdir(src):
            self._run(client, client.upload_dir, src, dest, create_dir=bool(dirCreate))
        elif os.path.exists(src):
            self._run(client, client.upload_file, src, dest, convert_text=convertCharset == 1)
        else:
            raise AgentError('ERROR: {0} not exists.'.format(src))
        if isVerbose == 1:
            print('INFO: Upload {} to {} success.'.format(src, dest))
        return 0

    def writeFile(self, user, content, dest, isVerbose=0, convertCharset=0):
        """Create or overwrite ``dest`` on the agent with ``content`` (bytes)."""
        client = self._client()
        client.user = user
        if convertCharset == 1 and self.agentCharset and self.agentCharset.lower() != self.charset.lower():
            content = content.decode(self.charset, 'ignore').encode(self.agentCharset, 'replace')
        self._run(client, client.write_file, content, dest.replace('\\', '/'))
        if isVerbose == 1:
            print('INFO: Write file {} success'.format(dest))
        return 0

    def transFile(self, srcHost, srcPort, srcUser, srcPassword, src, destUser, dest, isVerbose=0, followLinks=0):
        """Copy file or directory ``src`` of another agent to ``dest`` on this one (through a
        temporary directory on the runner, where the original streamed it)."""
        source = TagentClient(srcHost, srcPort, srcPassword, self.connectTimeout, self.readTimeout,
                              self.writeTimeout, self.execTimeout)
        workdir = tempfile.mkdtemp(prefix='tagent-trans-')
        try:
            name = os.path.basename(src.replace('\\', '/').rstrip('/')) or 'data'
            local = os.path.join(workdir, name)
            source.download(srcUser, src, local)
            # As the original's stream: a directory's contents go into dest (dest/<name> when dest ends in /).
            self.upload(destUser, local, dest, isVerbose, followLinks=followLinks, dirCreate=False)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if isVerbose == 1:
            print('INFO: Transfer {}@{}:{} to {}@{}:{} succeed.'.format(srcUser, srcHost, src, destUser, self.host, dest))
        return 0
