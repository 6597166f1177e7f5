# -*- coding: utf-8 -*-
"""The library runner-side Python tools import as ``AutoExecUtils``.

It offers the public API tools written for neatlogic call (same names, arguments and return
shapes), on autoexec's job contract: outputs to ``$OUTPUT_PATH``, live data to ``$LIVEDATA_PATH``,
the node's accumulated outputs in ``$NODE_OUTPUT_PATH``, nodes files next to
``$AUTOEXEC_NODES_PATH``, the job socket ``$AUTOEXEC_JOB_SOCK`` (JSON datagrams, at most 8192
bytes), and the console named in ``$AUTOEXEC_HOME/conf/config.ini`` (through ``ServerAdapter``,
found on ``PYTHONPATH``). Standard library only (``pymongo`` for :func:`getDB`), because a tool may
run under any python3 on ``PATH``; camelCase names because existing tools call them.
"""
import binascii
import configparser
import fcntl
import json
import os
import socket
import sys
import tempfile

try:
    import ServerAdapter
except ImportError:  # started without the runner's PYTHONPATH: the bundled core library
    sys.path.append(os.path.join(os.path.dirname(os.path.realpath(__file__)), '..', '..', '..', 'toollib'))
    import ServerAdapter

PYTHON_VER = sys.version_info.major
AUTOEXEC_CONTEXT = None

_MASTER_KEY = 'c3H002LGZRrseEPck9tsNgfXHJcl0USJ'  # protects password.key in config.ini
_ENCRYPTED_PREFIXES = ('{ENCRYPTED}', '{RC4}', 'RC4:')
_ENV_OVERRIDES = {  # the runner honours these over config.ini; so do its tools
    ('server', 'server.baseurl'): 'AUTOEXEC_SERVER_BASEURL',
    ('server', 'server.username'): 'AUTOEXEC_SERVER_USERNAME',
    ('server', 'server.password'): 'AUTOEXEC_SERVER_PASSWORD',
    ('autoexec', 'db.url'): 'AUTOEXEC_DB_URL',
    ('autoexec', 'db.name'): 'AUTOEXEC_DB_NAME',
    ('autoexec', 'db.username'): 'AUTOEXEC_DB_USERNAME',
    ('autoexec', 'db.password'): 'AUTOEXEC_DB_PASSWORD',
}
_MAX_DATAGRAM = 8192


# -- options (autoexec additions, used by the bundled tools) ---------------------------------------
def parseOptions(argv=None):
    """``--name value`` / ``-x value`` / ``--name=value`` options, then free arguments.

    The runner always renders a value after an option, so the token after an option is its value
    even when it starts with ``-``. The first bare token (or ``--``) ends the options.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    opts = {}
    i = 0
    while i < len(args):
        token = args[i]
        if token == '--':
            i += 1
            break
        if not token.startswith('-') or token == '-':
            break
        name = token.lstrip('-')
        if '=' in name and token.startswith('--'):
            name, value = name.split('=', 1)
            i += 1
        else:
            value = args[i + 1] if i + 1 < len(args) else ''
            i += 2
        opts[name] = value
    return opts, args[i:]


def unescapeTextarea(value):
    """The runner turns textarea newlines into the two characters ``\\n``; undo that."""
    return value.replace('\\n', '\n')


def isTrue(value):
    return str(value).strip().lower() in ('true', '1', 'yes', 'on')


# -- context and secrets -------------------------------------------------------------------------------
class Context(object):
    """What console calls need: config.ini by section (secrets decrypted), tenant and job id."""

    def __init__(self, config, tenent=None):
        self.devMode = False
        self.tenant = tenent
        self.config = config
        self.jobId = os.getenv('AUTOEXEC_JOBID')
        try:
            self.passThroughEnv = json.loads(os.getenv('PASSTHROUGH_ENV') or '{}')
        except ValueError:
            self.passThroughEnv = {}
        self.fileFeteched = {}
        self.scriptFetched = {}
        self.opFetched = {}


def setEnv():
    """Nothing to prepare for runner-side tools (kept because tools call it)."""


def _rc4(key, data):
    box = list(range(256))
    j = 0
    for i in range(256):
        j = (j + box[i] + key[i % len(key)]) % 256
        box[i], box[j] = box[j], box[i]
    i = j = 0
    out = bytearray()
    for byte in data:
        i = (i + 1) % 256
        j = (j + box[i]) % 256
        box[i], box[j] = box[j], box[i]
        out.append(byte ^ box[(box[i] + box[j]) % 256])
    return bytes(out)


def _rc4_decrypt_hex(key, hexText):
    """RC4 keyed by the low byte of each key character, over the hex-decoded value; UTF-8 text
    when it decodes as such, else latin-1 (what the original produced)."""
    if not key:
        raise ValueError('RC4 key (password.key) is empty')
    plain = _rc4(bytearray(ord(ch) & 0xFF for ch in key), binascii.unhexlify(hexText.strip()))
    try:
        return plain.decode('utf-8')
    except UnicodeDecodeError:
        return plain.decode('latin-1')


def _decrypt(value, key):
    for prefix in _ENCRYPTED_PREFIXES:
        if value.startswith(prefix):
            return _rc4_decrypt_hex(key, value[len(prefix):])
    return value


def _config_path():
    home = os.getenv('AUTOEXEC_HOME')
    if not home:  # the original's layout: <home>/plugins/local/lib/AutoExecUtils.py
        home = os.path.join(os.path.dirname(os.path.realpath(__file__)), '..', '..', '..')
    return os.path.join(os.path.realpath(home), 'conf', 'config.ini')


def getAutoexecContext():
    """The process-wide :class:`Context`, read once from config.ini (``$AUTOEXEC_HOME/conf``)."""
    global AUTOEXEC_CONTEXT
    if AUTOEXEC_CONTEXT is None:
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(_config_path(), encoding='utf-8')
        config = {'server': {}, 'autoexec': {}}
        for section in parser.sections():
            config.setdefault(section, {}).update(dict(parser[section]))
        for (section, key), name in _ENV_OVERRIDES.items():
            if os.getenv(name):
                config[section][key] = os.environ[name]
        server, autoexec = config['server'], config['autoexec']
        passKey = server.get('password.key') or ''
        if passKey.startswith('{ENCRYPTED}'):
            passKey = server['password.key'] = _rc4_decrypt_hex(_MASTER_KEY, passKey[len('{ENCRYPTED}'):])
        for section, key in ((server, 'server.password'), (autoexec, 'db.password')):
            if (section.get(key) or '').startswith('{ENCRYPTED}'):
                section[key] = _rc4_decrypt_hex(passKey, section[key][len('{ENCRYPTED}'):])
        AUTOEXEC_CONTEXT = Context(config, os.getenv('AUTOEXEC_TENANT'))
    return AUTOEXEC_CONTEXT


def _serverAdapter():
    return ServerAdapter.ServerAdapter(getAutoexecContext())


# -- job files -------------------------------------------------------------------------------------------
def _saveJson(path, data, what):
    print('INFO: Try save {} to {}.'.format(what, path))
    if not path:
        print('WARN: Could not save {} file, because of environ {} not defined.'.format(
            what, 'OUTPUT_PATH' if what == 'output' else 'LIVEDATA_PATH'))
        return
    directory = os.path.dirname(path) or '.'
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.' + os.path.basename(path) + '.', dir=directory)
    try:
        with os.fdopen(fd, 'w', encoding='utf-8') as fh:
            fh.write(json.dumps(data, indent=4, ensure_ascii=False))
        os.replace(tmp, path)  # the runner never reads a half-written file
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    print('INFO: Save {} success.'.format(what))


def saveOutput(outputData):
    """Write the op's outputs (a JSON object) to ``$OUTPUT_PATH``."""
    _saveJson(os.getenv('OUTPUT_PATH'), outputData, 'output')


def saveLiveData(outputData):
    """Write the tool's live data (shown by the console while it runs) to ``$LIVEDATA_PATH``."""
    _saveJson(os.getenv('LIVEDATA_PATH'), outputData, 'live data')


def getMyNode():
    """The node this op runs for (``$AUTOEXEC_NODE``), or None."""
    text = os.getenv('AUTOEXEC_NODE')
    return json.loads(text) if text else None


def _jsonLines(path):
    with open(path, 'r', encoding='utf-8') as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def getNode(resourceId):
    """The node with ``resourceId`` as the phase's nodes file (``$AUTOEXEC_NODES_PATH``) has it,
    password included; None when absent."""
    path = os.getenv('AUTOEXEC_NODES_PATH')
    match = None
    if path:
        for node in _jsonLines(path):
            if 'resourceId' in node and str(node['resourceId']) == str(resourceId):
                match = node
    return match


def _nodesFile(phaseName, groupNo):
    """The phase's file, else the group's, else the job's ``nodes.json`` (next to
    ``$AUTOEXEC_NODES_PATH``); None when that variable is unset."""
    path = os.getenv('AUTOEXEC_NODES_PATH')
    if path is None:
        return None
    directory = os.path.dirname(path)
    if phaseName is not None:
        candidate = os.path.join(directory, 'nodes-ph-{}.json'.format(phaseName))
        if os.path.exists(candidate):
            return candidate
    if groupNo is not None:
        candidate = os.path.join(directory, 'nodes-gp-{}.json'.format(groupNo))
        if os.path.exists(candidate):
            return candidate
    return os.path.join(directory, 'nodes.json')


def getNodesArray(phaseName=None, groupNo=None):
    """Nodes of the chosen nodes file in file order, header skipped, passwords removed; none when
    the job has no such file (the original raised)."""
    path = _nodesFile(phaseName, groupNo)
    nodes = []
    if path is not None and os.path.exists(path):
        lines = _jsonLines(path)
        next(lines, None)  # header: totalCount, localRunnerId, jobRunnerIds
        for node in lines:
            node.pop('password', None)
            nodes.append(node)
    return nodes


def getNodes(phaseName=None, groupNo=None):
    """Same nodes as :func:`getNodesArray`, keyed by ``resourceId``."""
    return {node.get('resourceId'): node for node in getNodesArray(phaseName, groupNo)}


def loadNodeOutput():
    """Outputs of every op run so far on this node (``$NODE_OUTPUT_PATH``), read under the shared
    lock the runner writes it under; ``{}`` when there are none."""
    path = os.getenv('NODE_OUTPUT_PATH')
    if not path or not os.path.exists(path):
        print('WARN: Output file:{} not found.'.format(path))
        return {}
    try:
        with open(path, 'r', encoding='utf-8') as fh:
            fcntl.flock(fh, fcntl.LOCK_SH)
            try:
                content = fh.read()
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return json.loads(content) if content.strip() else {}
    except (OSError, ValueError) as ex:
        print('ERROR: Load output file:{}, failed {}'.format(path, ex))
        return {}


def getOpPreOutput():
    """This op's outputs from its previous run on this node, or None."""
    return loadNodeOutput().get(os.getenv('OPERATION_ID'))


# -- job socket --------------------------------------------------------------------------------------------
def _sendToJob(request):
    path = os.getenv('AUTOEXEC_JOB_SOCK')
    if not path or not os.path.exists(path):
        raise OSError('socket file {} not exist'.format(path))
    data = json.dumps(request, ensure_ascii=False).encode('utf-8')
    if len(data) > _MAX_DATAGRAM:
        raise ValueError('request of {} bytes exceeds the job socket limit of {} bytes'.format(len(data), _MAX_DATAGRAM))
    client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        client.connect(path)
        client.send(data)
    finally:
        client.close()


def informNodeWaitInput(resourceId, title=None, opType='button', message='Please select', options=None,
                        role=None, pipeFile=None, clean=None):
    """Tell the running job this node waits for a human (status ``waitInput``; the console shows
    ``message`` and ``options``), or, with ``clean=1``, that the answer came (back to ``running``).
    Failures only print a WARN: the tool goes on waiting for its input either way."""
    request = {'action': 'informNodeWaitInput', 'phaseName': os.getenv('AUTOEXEC_PHASE_NAME'),
               'resourceId': resourceId, 'interact': None}
    if clean:
        request['clean'] = 1
    elif isinstance(options, (list, tuple)):
        request['interact'] = {'title': title, 'opType': opType, 'message': message, 'options': list(options),
                               'role': role, 'pipeFile': pipeFile}
    status = 'running' if clean else 'waitInput'
    try:
        _sendToJob(request)
        print('INFO: Inform node:{} update status to {} success.'.format(resourceId, status))
    except (OSError, ValueError) as ex:
        print('WARN: Inform node:{} update status to {} failed, {}'.format(resourceId, status, ex))


def setJobEnv(onlyInProcess, items):
    """Set job variables (``{name: value}``) for the ops that start after this one; unless
    ``onlyInProcess``, the job also records them. Raises when the job cannot be told."""
    if not items:
        return
    try:
        _sendToJob({'action': 'setEnv', 'onlyInProcess': onlyInProcess, 'items': items})
    except (OSError, ValueError) as ex:
        raise Exception('ERROR: Set job env failed, {}.'.format(ex)) from None


# -- JSON helpers -------------------------------------------------------------------------------------------
def isJson(data):
    """True when ``data`` (a string or a readable file) holds valid JSON."""
    try:
        if hasattr(data, 'read'):
            json.load(data)
        else:
            json.loads(data)
        return True
    except (TypeError, ValueError):
        return False


def handleJsonstr(jsonstr):
    """Make a Python-repr-like string parseable as JSON: single quotes become double quotes (so
    ``u'x'`` loses nothing further) and ``None`` becomes ``""``."""
    return jsonstr.replace("'", '"').replace("u'", "'").replace('None', '""')


# -- MongoDB and console -------------------------------------------------------------------------------------
def getDB():
    """``(MongoClient, database)`` of config.ini's ``db.*`` keys, else of the console's MongoDB config."""
    import pymongo

    context = getAutoexecContext()
    ServerAdapter.ServerAdapter(context).getMongoDBConf()
    cfg = context.config['autoexec']
    client = pymongo.MongoClient(cfg.get('db.url'), username=cfg.get('db.username') or None,
                                 password=cfg.get('db.password') or None)
    return (client, client[cfg.get('db.name') or 'autoexec'])


def getNodePwd(resourceId, host, port, username, protocol):
    """The account's password from the console, decrypted with config.ini's ``password.key``."""
    context = getAutoexecContext()
    value = ServerAdapter.ServerAdapter(context).getNodePwd(resourceId, host, port, username, protocol)
    if isinstance(value, str):
        return _decrypt(value, context.config['server'].get('password.key') or '')
    return value


def updateInspectStatus(ciType, resourceId, status, alertCount):
    return _serverAdapter().updateInspectStatus(ciType, resourceId, status, alertCount)


def updateMonitorStatus(ciType, resourceId, status, alertCount):
    return _serverAdapter().updateMonitorStatus(ciType, resourceId, status, alertCount)


def setResourceInspectJobId(resourceId, jobId, phaseName):
    return _serverAdapter().setResourceInspectJobId(resourceId, jobId, phaseName)


def getCmdbCiAttrs(resourceId, attrList):
    return _serverAdapter().getCmdbCiAttrs(resourceId, attrList)


def getAccessEndpointConf(resourceId):
    return _serverAdapter().getAccessEndpointConf(resourceId)


def getScript(scriptId):
    return _serverAdapter().getScript(scriptId)


def getCITxtFilePathList(resoruceId):
    return _serverAdapter().getCITxtFilePathList(resoruceId)


def uploadFile(filePath, fileType):
    return _serverAdapter().uploadFile(filePath, fileType)


def removeUploadedFile(fileId):
    return _serverAdapter().removeUploadedFile(fileId)


def txtFileInspectSave(params):
    return _serverAdapter().txtFileInspectSave(params)


def notifyInspectReport(params):
    return _serverAdapter().notifyInspectReport(params)


def getResourceInfoList(ip, port, name, type):
    return _serverAdapter().getResourceInfoList(ip, port, name, type)


def saveVersionMetrics(data):
    return _serverAdapter().saveVersionMetrics(data)


def saveVersionCveList(data):
    return _serverAdapter().saveVersionCveList(data)


def getJobStatus(params):
    return _serverAdapter().getJobStatus(params)
