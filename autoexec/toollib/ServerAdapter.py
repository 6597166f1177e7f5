# -*- coding: utf-8 -*-
"""Console calls a tool makes, as the class ``ServerAdapter(context)`` tools of the original use.

Requests are signed the way the console checks them (HMAC-SHA256 with ``server.password``) and,
unlike the original, time out. Standard library only, because a tool may run under any python3
found on ``PATH``."""
import base64
import hashlib
import hmac
import json
import os
import ssl
import time
import uuid
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from AutoExecError import AutoExecError

REST = '/neatlogic/api/rest'
BINARY = '/neatlogic/api/binary'

# Console API paths of the calls tools make (names as the original's apiMap keys).
API_PATHS = {
    'getMongoDBConf': REST + '/mongodb/datasource/get',
    'getScript': REST + '/autoexec/script/active/version/get',
    'getAccount': REST + '/resourcecenter/resource/account/get',
    'getNodePwd': REST + '/resourcecenter/resource/account/get',
    'getInspectConf': REST + '/autoexec/inspect/nodeconf/get',
    'updateInspectStatus': REST + '/cmdb/cientity/updateinspectstatus',
    'updateMonitorStatus': REST + '/cmdb/cientity/updatemonitorstatus',
    'setResourceInspectJobId': REST + '/autoexec/job/resource/inspect/update',
    'getCmdbCiAttrs': REST + '/cmdb/cientity/attrentity/get',
    'getAccessEndpoint': REST + '/resourcecenter/resource/accessendpoint/get',
    'getDeployIdPath': REST + '/resourcecenter/resource/appidmoduleidenvid/get',
    'getDeployRunnerGroup': REST + '/deploy/runner/group/get/forautoexec',
    'getCITxtFilePathList': REST + '/inspect/configfile/resource/path/list',
    'uploadFile': BINARY + '/file/upload',
    'removeUploadedFile': REST + '/file/delete',
    'txtFileInspectSave': REST + '/inspect/configfile/audit/save',
    'inspectReport': REST + '/inspect/autoexec/job/report/notify',
    'getResourceInfo': REST + '/resourcecenter/resource/custom/list',
    'saveVersionMetrics': REST + '/deploy/version/commit/analyze/save',
    'saveVersionCveList': REST + '/deploy/version/cvelist/save',
    'getJobStatus': REST + '/autoexec/job/status/get',
    'createJobFromCombop': REST + '/autoexec/job/from/combop/create/public',
    'refireJob': REST + '/autoexec/job/refire',
}

# Attribute ids the console's resource search uses for ip, port, name and type.
_RESOURCE_ATTR_UUIDS = (('ip', 'c9cc49f2fbab454ca678361c5a3794cc', 'equal'),
                        ('port', 'a04cff8b501c44f7a66b9c0b15e2f3d4', 'equal'),
                        ('name', 'a72d187fde1b4114b5dbb35b633c5b62', 'equal'),
                        ('typeIdList', 'bf12f6806aa6477086c7e1d7c7c9a52a', 'like'))
_RESOURCE_GROUP_UUID = '6f81871c303b458b8be100ee64aa9506'

TIMEOUT = float(os.getenv('AUTOEXEC_TOOL_CONSOLE_TIMEOUT') or 60)


def _tls_context(server):
    """The console's certificate is checked as the runner checks it: always, against
    ``server.caFile`` when config.ini names one, unless ``server.verifyTLS = 0`` turns checking off
    (``AUTOEXEC_SERVER_VERIFY_TLS`` / ``AUTOEXEC_SERVER_CA_FILE`` override). ConfigParser lowercases
    the keys."""
    verify = (os.getenv('AUTOEXEC_SERVER_VERIFY_TLS') or server.get('server.verifytls') or '1').strip().lower()
    if verify in ('0', 'false', 'no', 'off'):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    return ssl.create_default_context(cafile=os.getenv('AUTOEXEC_SERVER_CA_FILE') or server.get('server.cafile') or None)


class ServerAdapter(object):
    def __init__(self, context):
        self.context = context
        self.apiMap = dict(API_PATHS)
        server = context.config.get('server', {})
        self.serverBaseUrl = (server.get('server.baseurl') or '').rstrip('/')
        self.serverUserName = server.get('server.username') or ''
        self.serverPassword = server.get('server.password') or ''
        self._ssl = _tls_context(server)

    # -- transport -------------------------------------------------------------------------------
    def getSignHeaders(self, apiUri, postBody=None, currentUsername=None, currentPassword=None):
        user = currentUsername or self.serverUserName
        token = currentPassword or self.serverPassword
        if isinstance(postBody, str):
            postBody = postBody.encode('utf-8')
        content = '{}#{}#{}'.format(user, apiUri, base64.b64encode(postBody).decode('ascii') if postBody else '')
        digest = hmac.new(token.encode('utf-8'), content.encode('utf-8'), hashlib.sha256).hexdigest()
        return {'Tenant': str(self.context.tenant or 'none'), 'AuthType': 'hmac', 'x-access-key': user,
                'Authorization': 'Hmac ' + digest}

    def _send(self, apiUri, body=None, contentType=None, currentUsername=None, currentPassword=None):
        if not self.serverBaseUrl:
            raise AutoExecError('console is not configured: server.baseurl is empty in conf/config.ini')
        if not apiUri.startswith('/'):
            apiUri = '/' + apiUri
        headers = self.getSignHeaders(apiUri, None if contentType and contentType.startswith('multipart/') else body,
                                      currentUsername, currentPassword)
        if contentType:
            headers['Content-Type'] = contentType
        req = Request(self.serverBaseUrl + apiUri, data=body, headers=headers, method='POST' if body is not None else 'GET')
        try:
            return urlopen(req, timeout=TIMEOUT, context=self._ssl)
        except HTTPError as ex:
            message = 'HTTP {}'.format(ex.code)
            try:
                message = json.loads(ex.read().decode('utf-8', 'replace')).get('Message') or message
            except (OSError, ValueError, AttributeError):
                pass
            raise AutoExecError('Request failed, {}'.format(message)) from None
        except URLError as ex:
            raise AutoExecError('Request url:{} failed, {}'.format(self.serverBaseUrl + apiUri, ex.reason)) from None
        except OSError as ex:
            raise AutoExecError('Request url:{} failed, {}'.format(self.serverBaseUrl + apiUri, ex)) from None

    def httpJSON(self, apiUri, params, currentUsername=None, currentPassword=None):
        body = json.dumps(params, ensure_ascii=False).encode('utf-8')
        return self._send(apiUri, body, 'application/json; charset=utf-8', currentUsername, currentPassword)

    def httpPOST(self, apiUri, params, currentUsername=None, currentPassword=None):
        body = json.dumps(params, ensure_ascii=False).encode('utf-8')
        return self._send(apiUri, body, 'application/x-www-form-urlencoded; charset=utf-8',
                          currentUsername, currentPassword)

    def httpGET(self, apiUri, params=None):
        if params:
            apiUri = apiUri + '?' + urlencode(params)
        return self._send(apiUri)

    @staticmethod
    def _envelope(response):
        charset = response.headers.get_content_charset() or 'utf-8'
        with response:
            return json.loads(response.read().decode(charset, errors='replace'))

    def _call(self, api, params, what, currentUsername=None, currentPassword=None, method='POST'):
        """Send one call; the whole envelope when ``Status`` is OK, else AutoExecError naming ``what``."""
        try:
            if method == 'GET':
                envelope = self._envelope(self.httpGET(self.apiMap[api], params))
            else:
                envelope = self._envelope(self.httpJSON(self.apiMap[api], params, currentUsername, currentPassword))
        except AutoExecError as ex:
            raise AutoExecError('{} failed, {}'.format(what, ex.value)) from None
        except ValueError as ex:
            raise AutoExecError('{} failed, response is not JSON: {}'.format(what, ex)) from None
        if not isinstance(envelope, dict) or envelope.get('Status') != 'OK':
            message = envelope.get('Message') if isinstance(envelope, dict) else envelope
            raise AutoExecError('{} failed, {}'.format(what, message))
        return envelope

    # -- calls -------------------------------------------------------------------------------------
    def getMongoDBConf(self):
        """Fill ``config['autoexec']`` db.url/db.name/db.username/db.password from the console when
        config.ini names no ``db.url``."""
        if self.context.devMode:
            return
        cfg = self.context.config.setdefault('autoexec', {})
        if cfg.get('db.url'):
            return
        conf = self._call('getMongoDBConf', None, 'Get MongoDB config', method='GET').get('Return') or {}
        option = conf.get('option')
        cfg['db.url'] = 'mongodb://{}/{}'.format(conf.get('host'), '?' + option if option else '')
        cfg['db.name'] = conf.get('database')
        cfg['db.username'] = conf.get('username')
        cfg['db.password'] = conf.get('passwordPlain')

    def getScript(self, scriptId):
        return self._call('getScript', {'operationId': scriptId}, 'Get script {}'.format(scriptId),
                          method='GET').get('Return')

    def getAccount(self, resourceId, host, port, username, protocol, accountId):
        if self.context.devMode:
            return {}
        params = {'jobId': self.context.jobId, 'resourceId': resourceId, 'host': host, 'port': port,
                  'username': username, 'accountId': accountId, 'protocol': protocol}
        what = 'Get Account for {} user:{}'.format(protocol, username if username is not None else 'none')
        return self._call('getAccount', params, what).get('Return')

    def getNodePwd(self, resourceId, host, port, username, protocol):
        if self.context.devMode:
            return {}
        params = {'jobId': self.context.jobId, 'resourceId': resourceId, 'host': host, 'port': port,
                  'username': username, 'protocol': protocol}
        what = 'Get password for {}://{}@{}:{}'.format(protocol, username if username is not None else 'none',
                                                        host, port)
        return self._call('getNodePwd', params, what).get('Return')

    def getInspectConf(self, ciType, resourceId):
        if self.context.devMode:
            return {}
        # "tenent" (sic) is the key the console reads.
        params = {'tenent': self.context.tenant, 'jobId': self.context.jobId, 'ciType': ciType,
                  'resourceId': resourceId, 'time': time.time()}
        return self._call('getInspectConf', params,
                          'Get Inspect Config for {}/{}'.format(ciType, resourceId)).get('Return')

    def updateInspectStatus(self, ciType, resourceId, status, alertCount):
        if self.context.devMode:
            return {}
        params = {'jobId': self.context.jobId, 'ciType': ciType, 'ciEntityId': resourceId,
                  'inspectStatus': status, 'alertCount': alertCount, 'inspectTime': int(time.time() * 1000)}
        self._call('updateInspectStatus', params, 'Update inspect status for {}/{}'.format(ciType, resourceId))
        return True

    def updateMonitorStatus(self, ciType, resourceId, status, alertCount):
        if self.context.devMode:
            return {}
        params = {'jobId': self.context.jobId, 'ciType': ciType, 'ciEntityId': resourceId,
                  'monitorStatus': status, 'alertCount': alertCount, 'monitorTime': int(time.time() * 1000)}
        self._call('updateMonitorStatus', params, 'Update monitor status for {}/{}'.format(ciType, resourceId))
        return True

    def setResourceInspectJobId(self, resourceId, jobId, phaseName):
        if self.context.devMode:
            return {}
        params = {'resourceId': resourceId, 'jobId': jobId, 'phaseName': phaseName,
                  'inspectTime': int(time.time() * 1000)}
        self._call('setResourceInspectJobId', params,
                   'Set resource({}) inspect job Id({})'.format(resourceId, jobId))
        return True

    def getCmdbCiAttrs(self, resourceId, attrList):
        """``{attribute name: value}``: None without a value, the value itself for one, the list
        for several (the original replaced the whole map by the list there)."""
        if self.context.devMode:
            return {}
        params = {'jobId': self.context.jobId, 'ciEntityId': resourceId, 'attrList': attrList}
        ret = self._call('getCmdbCiAttrs', params, 'Get attributes for resourceId:{}'.format(resourceId)).get('Return')
        attrs = {}
        for info in ((ret or {}).get('attrEntityData') or {}).values():
            values = info.get('actualValueList') or []
            attrs[info.get('name')] = None if not values else values[0] if len(values) == 1 else values
        return attrs

    def getAccessEndpointConf(self, resourceId):
        if self.context.devMode:
            return {}
        params = {'jobId': self.context.jobId, 'tenant': self.context.tenant, 'resourceId': resourceId}
        return self._call('getAccessEndpoint', params,
                          'Get AccessEndpoint Config for {}'.format(resourceId)).get('Return')

    def getDeployIdPath(self, namePath):
        names = namePath.strip().split('/')
        params = {part: names[i] for i, part in enumerate(('sysName', 'moduleName', 'envName')) if i < len(names)}
        params['tenant'] = self.context.tenant
        return self._call('getDeployIdPath', params, 'Get deploy id path for {}'.format(namePath)).get('Return')

    def getDeployRunnerGroup(self, sysId, moduleId, envId):
        params = {'sysId': sysId, 'moduleId': moduleId, 'envId': envId, 'tenant': self.context.tenant}
        what = 'Get deploy runner group config for {}/{}/{}'.format(sysId, moduleId, envId)
        return self._call('getDeployRunnerGroup', params, what).get('Return')

    def getCITxtFilePathList(self, resourceId):
        ret = self._call('getCITxtFilePathList', {'resourceId': resourceId},
                         'Get config file list for ci:{}'.format(resourceId)).get('Return')
        return (ret or {}).get('tbodyList')

    def uploadFile(self, filePath, fileType='inspectconfigfile'):
        """Multipart upload (parts ``param=file``, ``type``, ``file``); signed over the bare path with
        no body, as the console checks uploads. Returns the console's file record (with its id)."""
        what = 'Upload file:{}'.format(filePath)
        try:
            with open(filePath, 'rb') as fh:
                data = fh.read()
        except OSError as ex:
            raise AutoExecError('{} failed, {}'.format(what, ex)) from None
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in (('param', 'file'), ('type', fileType)):
            parts.append('--{}\r\nContent-Disposition: form-data; name="{}"\r\n\r\n{}\r\n'
                         .format(boundary, name, value).encode('utf-8'))
        parts.append('--{}\r\nContent-Disposition: form-data; name="file"; filename="{}"\r\n'
                     'Content-Type: text/plain\r\n\r\n'.format(boundary, filePath).encode('utf-8'))
        parts.append(data)
        parts.append('\r\n--{}--\r\n'.format(boundary).encode('utf-8'))
        try:
            envelope = self._envelope(self._send(self.apiMap['uploadFile'], b''.join(parts),
                                                 'multipart/form-data; boundary=' + boundary))
        except AutoExecError as ex:
            raise AutoExecError('{} failed, {}'.format(what, ex.value)) from None
        if envelope.get('Status') != 'OK':
            raise AutoExecError('{} failed, {}'.format(what, envelope.get('Message')))
        return envelope.get('Return')

    def removeUploadedFile(self, fileId):
        self._call('removeUploadedFile', {'fileId': fileId}, 'Remove uploaded file(fileId={})'.format(fileId))

    def txtFileInspectSave(self, params):
        hint = 'CI({}) file({}):{}'.format(params.get('resourceId'), params.get('pathId'), params.get('path'))
        self._call('txtFileInspectSave', params, 'Save Inspect for {}'.format(hint))

    def notifyInspectReport(self, params):
        jobId = params['jobId']
        self._call('inspectReport', params, 'Notify inspect Report {}'.format(jobId))

    def getResourceInfoList(self, ip, port, name, type):
        """Resources matching every given one of ip, port, name and type (the console's custom search).
        The original refused a single condition; one is enough here."""
        given = {'ip': ip, 'port': port, 'name': name, 'typeIdList': type}
        what = 'Get Resource info ip:{}/name:{}/port:{}/type:{}'.format(ip, name, port, type)
        conditions = [{'uuid': attr_uuid, 'name': attr, 'valueList': [given[attr]], 'expression': expr}
                      for attr, attr_uuid, expr in _RESOURCE_ATTR_UUIDS if given[attr] not in (None, '')]
        if not conditions:
            raise AutoExecError('{} failed, parameter empty or not value.'.format(what))
        rels = [{'joinType': 'and', 'from': conditions[i]['uuid'], 'to': conditions[i + 1]['uuid']}
                for i in range(len(conditions) - 1)]
        params = {'keyword': '', 'searchMode': 'text', 'currentPage': 1, 'pageSize': 10,
                  'conditionGroupList': [{'uuid': _RESOURCE_GROUP_UUID, 'conditionList': conditions,
                                          'conditionRelList': rels}]}
        return (self._call('getResourceInfo', params, what).get('Return') or {}).get('tbodyList')

    def saveVersionMetrics(self, data):
        return self._call('saveVersionMetrics', data, 'saveVersionMetrics')

    def saveVersionCveList(self, data):
        return self._call('saveVersionCveList', data, 'saveVersionCveList')

    def getJobStatus(self, params):
        jobId = params['jobId']
        return (self._call('getJobStatus', params, 'getJobStatus {}'.format(jobId)).get('Return') or {}).get('status')

    def createJobFromCombop(self, params, currentUsername=None, currentPassword=None):
        return self._call('createJobFromCombop', params, 'createJobFromCombop',
                          currentUsername, currentPassword).get('Return')

    def refireJob(self, params, currentUsername=None, currentPassword=None):
        return self._call('refireJob', params, 'refireJob', currentUsername, currentPassword).get('Return')
