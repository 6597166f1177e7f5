"""Names and paths of every console API.

The outbox stores the API *name*, not the path, so that a queued entry stays meaningful if a path
is ever corrected; this table is the single place mapping one to the other.
"""
from __future__ import annotations

_REST = "/neatlogic/api/rest"
_BIN = "/neatlogic/api/binary"

PATHS: dict[str, str] = {
    # core job lifecycle
    "getMongoDBConf": f"{_REST}/mongodb/datasource/get",
    "getParams": f"{_REST}/autoexec/job/create/param/get",
    "getNodes": f"{_BIN}/autoexec/job/phase/nodes/download",
    "updateNodeStatus": f"{_REST}/autoexec/job/phase/node/status/update",
    "updatePhaseStatus": f"{_REST}/autoexec/job/phase/status/update",
    "fireNextGroup": f"{_REST}/autoexec/job/next/group/fire",
    "fireNextPhase": f"{_REST}/autoexec/job/next/phase/fire",
    "informRoundEnded": f"{_REST}/autoexec/job/phase/inform/round/end",
    "updateJobStatus": f"{_REST}/autoexec/job/status/update",
    "fetchFile": f"{_BIN}/file/download",
    "fetchScript": f"{_BIN}/autoexec/job/phase/operation/script/get/forautoexec",
    "getAccount": f"{_REST}/resourcecenter/resource/account/get",
    "exportJobEnv": f"{_REST}/autoexec/job/env/update",
    "updateGlobalParam": f"{_REST}/autoexec/global/param/update/forautoexec",
    "globalLock": f"{_REST}/global/lock",
    "getDeployIdPath": f"{_REST}/resourcecenter/resource/appidmoduleidenvid/get",
    "getDeployRunnerGroup": f"{_REST}/deploy/runner/group/get/forautoexec",
    "registerTool": f"{_REST}/autoexec/tool/register",
    "cleanNativeTools": f"{_REST}/autoexec/tool/batch/delete",
    # calls made by plugins/tools
    "getScript": f"{_REST}/autoexec/script/active/version/get",
    "getNodePwd": f"{_REST}/resourcecenter/resource/account/get",
    "getInspectConf": f"{_REST}/autoexec/inspect/nodeconf/get",
    "updateInspectStatus": f"{_REST}/cmdb/cientity/updateinspectstatus",
    "updateMonitorStatus": f"{_REST}/cmdb/cientity/updatemonitorstatus",
    "setResourceInspectJobId": f"{_REST}/autoexec/job/resource/inspect/update",
    "getCmdbCiAttrs": f"{_REST}/cmdb/cientity/attrentity/get",
    "getAccessEndpointConf": f"{_REST}/resourcecenter/resource/accessendpoint/get",
    "getCITxtFilePathList": f"{_REST}/inspect/configfile/resource/path/list",
    "uploadFile": f"{_BIN}/file/upload",
    "removeUploadedFile": f"{_REST}/file/delete",
    "txtFileInspectSave": f"{_REST}/inspect/configfile/audit/save",
    "notifyInspectReport": f"{_REST}/inspect/autoexec/job/report/notify",
    "getResourceInfoList": f"{_REST}/resourcecenter/resource/custom/list",
    "saveVersionMetrics": f"{_REST}/deploy/version/commit/analyze/save",
    "saveVersionCveList": f"{_REST}/deploy/version/cvelist/save",
    "getJobStatus": f"{_REST}/autoexec/job/status/get",
    "createJobFromCombop": f"{_REST}/autoexec/job/from/combop/create/public",
    "refireJob": f"{_REST}/autoexec/job/refire",
}


def path_of(api: str) -> str:
    try:
        return PATHS[api]
    except KeyError:
        raise ValueError(f"unknown console API {api!r}") from None
