"""Console calls made by tools rather than by the runner.

Kept as a mixin of :class:`~autoexec.console.client.ConsoleClient` so Python tools get the same
signing, timeouts and typed errors as the runner. All of them raise on ``Status != OK``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from autoexec.console.apis import path_of

if TYPE_CHECKING:
    from autoexec.console.models import Envelope, Payload


class PluginCalls:
    # provided by ConsoleClient
    tenant: str

    def call(self, api: str, payload: Payload | Mapping[str, Any], *, check: bool = True,
             tenant: str | None = None, user: str | None = None, token: str | None = None) -> Envelope:
        raise NotImplementedError

    def get_json(self, path: str, query: Mapping[str, Any] | None = None, *, check: bool = True,
                 api: str = "") -> Envelope:
        raise NotImplementedError

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                payload: Any = None, tenant: str | None = None, user: str | None = None,
                token: str | None = None, stream: bool = False, files: Any = None,
                api: str = "") -> Any:
        raise NotImplementedError

    def envelope(self, resp: Any, *, check: bool = True, api: str = "") -> Envelope:
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------
    def get_script(self, operation_id: str) -> Any:
        return self.get_json(path_of("getScript"), {"operationId": operation_id}, api="getScript").return_

    def get_node_pwd(self, job_id: str, resource_id: Any, host: str, port: Any, username: str,
                     protocol: str) -> Any:
        payload = {"jobId": job_id, "resourceId": resource_id, "host": host, "port": port,
                   "username": username, "protocol": protocol}
        return self.call("getNodePwd", payload).return_

    def get_inspect_conf(self, job_id: str, ci_type: str, resource_id: Any) -> Any:
        # The original sends the (misspelt) key "tenent"; the console reads that key.
        payload = {"tenent": self.tenant, "jobId": job_id, "ciType": ci_type,
                   "resourceId": resource_id, "time": time.time()}
        return self.call("getInspectConf", payload).return_

    def update_inspect_status(self, job_id: str, ci_type: str, ci_entity_id: Any, inspect_status: str,
                              alert_count: int) -> Any:
        payload = {"jobId": job_id, "ciType": ci_type, "ciEntityId": ci_entity_id,
                   "inspectStatus": inspect_status, "alertCount": alert_count,
                   "inspectTime": int(time.time() * 1000)}
        return self.call("updateInspectStatus", payload).return_

    def update_monitor_status(self, job_id: str, ci_type: str, ci_entity_id: Any, monitor_status: str,
                              alert_count: int) -> Any:
        payload = {"jobId": job_id, "ciType": ci_type, "ciEntityId": ci_entity_id,
                   "monitorStatus": monitor_status, "alertCount": alert_count,
                   "monitorTime": int(time.time() * 1000)}
        return self.call("updateMonitorStatus", payload).return_

    def set_resource_inspect_job_id(self, resource_id: Any, job_id: str, phase_name: str) -> Any:
        payload = {"resourceId": resource_id, "jobId": job_id, "phaseName": phase_name,
                   "inspectTime": int(time.time() * 1000)}
        return self.call("setResourceInspectJobId", payload).return_

    def get_cmdb_ci_attrs(self, job_id: str, ci_entity_id: Any, attr_list: list[str]) -> Any:
        payload = {"jobId": job_id, "ciEntityId": ci_entity_id, "attrList": attr_list}
        return self.call("getCmdbCiAttrs", payload).return_

    def get_access_endpoint_conf(self, job_id: str, resource_id: Any) -> Any:
        payload = {"jobId": job_id, "tenant": self.tenant, "resourceId": resource_id}
        return self.call("getAccessEndpointConf", payload).return_

    def get_ci_txt_file_path_list(self, resource_id: Any) -> Any:
        ret = self.call("getCITxtFilePathList", {"resourceId": resource_id}).return_
        return (ret or {}).get("tbodyList") if isinstance(ret, dict) else ret

    def upload_file(self, path: Path, file_type: str = "inspectconfigfile") -> Any:
        """Multipart upload; signed with an empty body, path without query (the original's quirk)."""
        path = Path(path)
        with path.open("rb") as fh:
            files = {"param": (None, "file"), "type": (None, file_type),
                     "file": (str(path), fh, "text/plain")}
            resp = self.request("POST", path_of("uploadFile"), files=files, api="uploadFile")
            return self.envelope(resp, api="uploadFile").return_

    def remove_uploaded_file(self, file_id: Any) -> Any:
        return self.call("removeUploadedFile", {"fileId": file_id}).return_

    def txt_file_inspect_save(self, data: Mapping[str, Any]) -> Any:
        return self.call("txtFileInspectSave", data).return_

    def notify_inspect_report(self, data: Mapping[str, Any]) -> Any:
        if "jobId" not in data:
            raise ValueError("notifyInspectReport needs a jobId")
        return self.call("notifyInspectReport", data).return_

    def get_resource_info_list(self, search: Mapping[str, Any]) -> Any:
        ret = self.call("getResourceInfoList", search).return_
        return (ret or {}).get("tbodyList") if isinstance(ret, dict) else ret

    def save_version_metrics(self, data: Mapping[str, Any]) -> Envelope:
        return self.call("saveVersionMetrics", data)

    def save_version_cve_list(self, data: Mapping[str, Any]) -> Envelope:
        return self.call("saveVersionCveList", data)

    def get_job_status(self, data: Mapping[str, Any]) -> Any:
        if "jobId" not in data:
            raise ValueError("getJobStatus needs a jobId")
        ret = self.call("getJobStatus", data).return_
        return ret.get("status") if isinstance(ret, dict) else None

    def create_job_from_combop(self, data: Mapping[str, Any], *, user: str | None = None,
                               token: str | None = None) -> Any:
        """May be signed as another console user (``currentUsername/currentPassword``)."""
        return self.call("createJobFromCombop", data, user=user, token=token).return_

    def refire_job(self, data: Mapping[str, Any], *, user: str | None = None,
                   token: str | None = None) -> Any:
        return self.call("refireJob", data, user=user, token=token).return_
